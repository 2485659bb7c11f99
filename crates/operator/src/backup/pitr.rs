//! Point-in-time recovery with PostgreSQL's own means, in ParadeDB's image and the local one
//! alike (both have pg_basebackup, cp and cmp; nothing to install):
//! - unless WAL_ARCHIVING=off, the server copies each finished WAL segment into the volume
//!   `postgres_archive` (its `wal/`), at the latest WAL_ARCHIVE_TIMEOUT seconds after a write
//!   (the compose files' `archive_command`);
//! - `backup` adds a base backup there (`base/<UTC time>/`: pg_basebackup's tar, gzip, with the
//!   WAL it needs, and `finished`: when it was whole);
//! - `restore --to-time T` replays the newest base backup finished before T and the archived
//!   WAL up to T, into the stack's data volume; `backup verify --to-time T` does the same in a
//!   throwaway container (the drill).
//!
//! The archive is a volume of its own, never the data volume, so losing the data's disk
//! leaves it; copy the volume off the host too for a disaster that takes the whole host.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use serde::Serialize;

use crate::compose::Stack;
use crate::containers::{self, last_log_lines};
use crate::docker::exec_sh;
use crate::pg::{self, Pg};
use crate::poll::poll;

/// The archive volume inside a postgres container (the compose files mount it there).
pub const ARCHIVE: &str = "/var/lib/postgresql/archive";

/// Lists the base backups: `<name> <finished, Unix seconds>` per line.
const LIST: &str = r#"for f in /var/lib/postgresql/archive/base/*/finished; do
    [ -f "$f" ] && echo "$(basename "$(dirname "$f")") $(cat "$f")"
done; true"#;

/// Takes a base backup named $1 (in the postgres container through its socket, or in the
/// backup service over 127.0.0.1: pg_hba's `replication` lines admit both).
const TAKE: &str = r#"set -e
b=/var/lib/postgresql/archive/base; part="$b/.partial-$1"
mkdir -p "$b"; rm -rf "$part"
pg_basebackup -U "$POSTGRES_USER" -D "$part" --format=tar --gzip --wal-method=fetch --checkpoint=fast
# The first WAL segment it needs: older ones serve no recovery from it (backup prune).
tar -xzOf "$part/base.tar.gz" backup_label | sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\))$/\1/p' >"$part/first-wal"
date +%s >"$part/finished"
mv "$part" "$b/$1""#;

/// Fills $PGDATA from base backup $1 and sets it to recover to time $2 and promote. The data
/// it replaces goes to `replaced/$3` in the archive volume (says `kept`; $3 empty: deleted).
const PREPARE: &str = r#"set -e
a=/var/lib/postgresql/archive; d="$PGDATA"
mkdir -p "$d"
if [ -n "$(ls -A "$d")" ]; then
    if [ -n "$3" ]; then
        mkdir -p "$a/replaced/$3"
        find "$d" -mindepth 1 -maxdepth 1 -exec mv -t "$a/replaced/$3" {} +
        echo kept
    else
        find "$d" -mindepth 1 -delete
    fi
fi
tar -xzf "$a/base/$1/base.tar.gz" -C "$d"
rm -f "$d/standby.signal"; touch "$d/recovery.signal"
printf "%s\n" "restore_command = 'cp $a/wal/%f %p'" "recovery_target_time = '$2'" \
    "recovery_target_action = 'promote'" >>"$d/postgresql.auto.conf"
chown -R postgres:postgres "$d"; chmod 700 "$d""#;

/// Puts the data PREPARE moved to `replaced/$1` back (a failed recovery's undo).
const PUT_BACK: &str = r#"set -e
a=/var/lib/postgresql/archive; d="$PGDATA"
[ -d "$a/replaced/$1" ] || exit 0
find "$d" -mindepth 1 -delete
find "$a/replaced/$1" -mindepth 1 -maxdepth 1 -exec mv -t "$d" {} +
rmdir "$a/replaced/$1""#;

/// The recovery settings PREPARE wrote, removed once the server is promoted.
const RESET: [&str; 4] = [
    "ALTER SYSTEM RESET restore_command",
    "ALTER SYSTEM RESET recovery_target_time",
    "ALTER SYSTEM RESET recovery_target_action",
    "SELECT pg_reload_conf()",
];

/// A base backup in the archive volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Base {
    pub name: String,
    /// When it was whole (Unix seconds): recovery can start from it for any later time.
    pub finished: u64,
}

/// Whether the server archives its WAL (WAL_ARCHIVING is not off).
pub async fn archiving(pg: Pg<'_>) -> Result<bool> {
    Ok(pg::psql(pg, "SHOW archive_mode").await?.trim() != "off")
}

/// Takes a base backup into the archive volume of the running postgres; returns its name.
pub async fn take_base(pg: Pg<'_>, now: u64) -> Result<String> {
    let name = crate::utc::stamp(now);
    eprintln!(
        "==> taking a base backup for point-in-time recovery ({ARCHIVE}/base/{name}, pg_basebackup in {})",
        pg.name()
    );
    pg.sh("pg_basebackup", TAKE, &[&name]).await?;
    Ok(name)
}

/// The base backups in the archive volume of the running postgres.
pub async fn list(pg: Pg<'_>) -> Result<Vec<Base>> {
    Ok(parse_bases(&pg.sh("listing base backups", LIST, &[]).await?))
}

fn parse_bases(listing: &str) -> Vec<Base> {
    let mut bases: Vec<Base> = listing
        .lines()
        .filter_map(|l| {
            let (name, finished) = l.split_once(' ')?;
            Some(Base { name: name.to_string(), finished: finished.trim().parse().ok()? })
        })
        .collect();
    bases.sort_by_key(|b| b.finished);
    bases
}

/// The newest base backup whole before `target`, or why there is none.
pub fn choose(bases: &[Base], target: u64) -> Result<&Base> {
    if let Some(base) = bases.iter().rev().find(|b| b.finished <= target) {
        return Ok(base);
    }
    let when = crate::utc::rfc3339(target);
    match bases.first() {
        None => bail!(
            "there is no base backup to recover from: take one with `cargo xtask backup` (with WAL archiving on: \
             WAL_ARCHIVING is not `off` in .env); point-in-time recovery reaches back to the oldest base backup"
        ),
        Some(oldest) => bail!(
            "no base backup was finished before {when}: the oldest finished at {} (point-in-time recovery reaches \
             back to it; for older data restore a backup archive)",
            crate::utc::rfc3339(oldest.finished)
        ),
    }
}

/// The time as PostgreSQL's recovery_target_time reads it.
fn pg_time(target: u64) -> String {
    let [y, mo, d, h, mi, s] = crate::utc::civil(target);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}+00")
}

/// Waits until the postgres in `container` has recovered and been promoted; a server that
/// stops (or restarts) meanwhile fails the wait with its last log lines.
async fn wait_recovered(docker: &Docker, container: &str, timeout: Duration) -> Result<()> {
    let what = format!("PostgreSQL in {container} to finish recovery");
    poll(&what, timeout, Duration::from_millis(500), || async {
        let state = docker.inspect_container(container, None).await?;
        let running = state.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running || state.restart_count.unwrap_or(0) > 0 {
            let logs = last_log_lines(docker, container, 15).await;
            let hint = if logs.contains("before configured recovery target was reached") {
                "the archived WAL ends before that time (a segment is archived at the latest WAL_ARCHIVE_TIMEOUT \
                 seconds after a write; choose an earlier time)"
            } else {
                "see its last log lines"
            };
            bail!("PostgreSQL could not recover: {hint}; last log lines:\n{logs}");
        }
        let sql = r#"psql -X -At -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c 'SELECT pg_is_in_recovery()'"#;
        Ok(exec_sh(docker, container, "asking whether recovery is over", sql, &[])
            .await
            .ok()
            .filter(|o| o.trim() == "f"))
    })
    .await?;
    // One statement at a time: ALTER SYSTEM refuses a transaction block.
    for sql in RESET {
        pg::psql(Pg::Container(docker, container), sql).await?;
    }
    Ok(())
}

/// What a recovery to a time gave.
#[derive(Debug, Serialize)]
pub struct Recovered {
    pub target: String,
    pub base_backup: Base,
    pub schema_version: i64,
    pub rows: BTreeMap<String, i64>,
}

/// The drill: recovers the archive to `target` in a throwaway container of the stack's
/// postgres image (the archive volume mounted read-only) and counts what it holds.
pub async fn drill(docker: &Docker, project: &str, target: u64, timeout: Duration) -> Result<Recovered> {
    let parts = crate::containers::Parts::find(docker, project).await?;
    let pg = &parts.postgres.name;
    let base = choose(&list(Pg::Container(docker, pg)).await?, target)?.clone();
    let inspect = docker.inspect_container(pg, None).await?;
    let volume = containers::volume_at(&inspect, ARCHIVE).with_context(|| format!("{pg} has no volume on {ARCHIVE}: the compose file is older than point-in-time recovery; run `cargo xtask start`"))?;
    // The stack's user and database names, for the census (no password: the data exists).
    let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
    let env = env.into_iter().filter(|e| e.starts_with("POSTGRES_USER=") || e.starts_with("POSTGRES_DB="));
    let script = format!("{PREPARE}\nexec docker-entrypoint.sh postgres");
    let body = ContainerCreateBody {
        image: Some(parts.postgres.image.clone()),
        env: Some(env.collect()),
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
            base.name.clone(),
            pg_time(target),
            String::new(),
        ]),
        cmd: Some(vec![]),
        labels: Some([("io.github.weknora.drill".to_string(), "1".to_string())].into()),
        host_config: Some(HostConfig { binds: Some(vec![format!("{volume}:{ARCHIVE}:ro")]), ..Default::default() }),
        ..Default::default()
    };
    let target_text = crate::utc::rfc3339(target);
    crate::docker::with_throwaway(docker, "weknora-pitr-drill", body, async |name| {
        eprintln!("==> drill: recovering base backup {} and the archived WAL to {target_text} in {name}", base.name);
        wait_recovered(docker, name, timeout).await?;
        let (schema_version, rows) = pg::census(Pg::Container(docker, name)).await?;
        Ok(Recovered { target: target_text.clone(), base_backup: base.clone(), schema_version, rows })
    })
    .await
}

/// Runs a script in a one-off container of the stack's postgres service (its image, volumes
/// and environment), whether the service runs or not.
fn in_postgres_volumes(stack: &Stack, what: &str, script: &str, args: &[&str]) -> Result<String> {
    let run = [&["--entrypoint", "sh", "postgres", "-c", script, "sh"][..], args].concat();
    let out = stack.one_off(what, &run, Stdio::null(), Stdio::piped())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The base backups in the stack's archive volume (postgres may be stopped, its data lost).
pub fn bases(stack: &Stack) -> Result<Vec<Base>> {
    Ok(parse_bases(&in_postgres_volumes(stack, "listing the base backups", LIST, &[])?))
}

/// The destructive part of `restore --to-time`, with the app stopped: replaces the data
/// volume's content with base backup `base` recovered to `target`, the data of before kept in
/// the archive volume's `replaced/<keep>` (None: deleted). A recovery that fails puts the
/// data of before back and starts it again. Returns whether there was data to keep.
pub async fn recover(
    docker: &Docker,
    stack: &Stack,
    base: &Base,
    target: u64,
    keep: Option<&str>,
    timeout: Duration,
) -> Result<bool> {
    eprintln!("==> stopping postgres");
    stack.run(&["stop", "postgres"])?;
    let mut kept = false;
    let recovered = async {
        eprintln!("==> filling the data volume from base backup {}", base.name);
        let args = [base.name.as_str(), &pg_time(target), keep.unwrap_or_default()];
        kept = in_postgres_volumes(stack, "preparing the recovery", PREPARE, &args)?.lines().any(|l| l == "kept");
        eprintln!("==> replaying the archived WAL to {}", crate::utc::rfc3339(target));
        stack.run(&["up", "--detach", "--no-deps", "postgres"])?;
        let pg = containers::containers(docker, &stack.project).await?.into_iter().find(|c| c.service == "postgres");
        wait_recovered(docker, &pg.context("postgres did not start")?.name, timeout).await
    }
    .await;
    let Err(e) = recovered else { return Ok(kept) };
    let _ = stack.run(&["stop", "postgres"]);
    // PUT_BACK does nothing where nothing was moved (an empty data volume, or a failure
    // before the move).
    let undo = match keep {
        Some(keep) => match in_postgres_volumes(stack, "putting the data of before back", PUT_BACK, &[keep]) {
            Ok(_) => {
                let _ = stack.run(&["up", "--detach", "--no-deps", "postgres"]);
                "the data of before was put back (if there was any) and postgres started on it".to_string()
            }
            Err(put) => format!(
                "putting the data of before back failed too ({put:#}); it is in the archive volume under replaced/{keep}"
            ),
        },
        None => "the data of before was not kept (--no-safety-backup)".to_string(),
    };
    Err(e.context(format!("recovery to {} failed; {undo}", crate::utc::rfc3339(target))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_starts_from_the_newest_base_backup_whole_before_the_time() {
        let bases = parse_bases("20251201T020000Z 1764554460\nnot a line\n20251130T020000Z 1764468060\n");
        assert_eq!(bases.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["20251130T020000Z", "20251201T020000Z"]);
        assert_eq!(choose(&bases, 1764554460).unwrap().name, "20251201T020000Z");
        assert_eq!(choose(&bases, 1764554459).unwrap().name, "20251130T020000Z");
        let before = choose(&bases, 1764468000).unwrap_err().to_string();
        assert!(before.contains("the oldest finished at 2025-11-30T02:01:00Z"), "{before}");
        let none = choose(&[], 1764468000).unwrap_err().to_string();
        assert!(none.contains("cargo xtask backup") && none.contains("WAL_ARCHIVING"), "{none}");
        assert_eq!(pg_time(1764554460), "2025-12-01 02:01:00+00");
    }
}
