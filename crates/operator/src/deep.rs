//! `check --deep`: the runbook's troubleshooting checklist, run against the live stack. Each
//! finding says what it saw and, when it is not ok, the fix. It only reads: containers
//! through Docker, the database through psql in the postgres container, the names of the
//! uploaded files out of the app's container, and the last minutes of our services' logs.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use crate::containers::FILES_IN_APP;
use crate::containers::{Container, containers};
use crate::disk::{self, DISK_FAIL_BYTES, DISK_WARN_BYTES, human_bytes};
use crate::docker::download;
use crate::dotenv::Vars;
use crate::pg::{Pg, psql};
use crate::report::{Check, Status};

/// How long a statement may run, and how far back the logs are read.
pub struct Limits {
    pub long_query: Duration,
    pub logs: Duration,
}

/// Every finding about the stack of `project`.
pub async fn findings(docker: &Docker, project: &str, limits: &Limits) -> Result<Vec<Check>> {
    let all = containers(docker, project).await?;
    if all.is_empty() {
        bail!("project {project} has no containers: start it with `cargo xtask start`");
    }
    let mut out = vec![states(docker, &all).await];
    match all.iter().find(|c| c.service == "postgres" && c.state == "running") {
        None => out.push(finding(
            "database",
            "database",
            Status::Fail,
            "postgres is not running: nothing in the database could be checked",
            Some("cargo xtask start (then check --deep again)"),
        )),
        Some(pg) => {
            let db = Db { docker, container: &pg.name };
            out.push(db.connections().await);
            out.push(db.long_queries(limits.long_query).await);
            out.push(db.lock_waits().await);
            out.push(db.queue().await);
            out.push(db.orphan_chunks().await);
            out.push(db.missing_vectors().await);
            out.push(db.backups().await);
            let app = all.iter().find(|c| c.service == "app" || c.service == "app-dev");
            out.extend(db.files(app).await);
        }
    }
    out.push(volumes(docker, project).await);
    out.push(log_errors(docker, &all, limits.logs).await);
    Ok(out)
}

fn finding(
    id: &'static str,
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check { id, name, status, detail: detail.into(), fix: fix.map(str::to_string) }
}

/// A finding that could not be made: why, as a skip.
fn unknown(id: &'static str, name: &'static str, e: anyhow::Error) -> Check {
    finding(id, name, Status::Skip, format!("could not check: {e:#}"), None)
}

/// Container states, health, restarts and OOM kills.
async fn states(docker: &Docker, all: &[Container]) -> Check {
    let (mut down, mut restarted) = (Vec::new(), Vec::new());
    for c in all {
        if c.state != "running" || c.health == "unhealthy" {
            down.push(format!(
                "{} {}{}",
                c.service,
                c.state,
                if c.health == "-" { String::new() } else { format!(" {}", c.health) }
            ));
        }
        let Ok(inspect) = docker.inspect_container(&c.id, None).await else { continue };
        let restarts = inspect.restart_count.unwrap_or_default();
        let oom = inspect.state.as_ref().and_then(|s| s.oom_killed).unwrap_or_default();
        if restarts > 0 || oom {
            restarted.push(format!(
                "{} restarted {restarts} time{}{}",
                c.service,
                if restarts == 1 { "" } else { "s" },
                if oom { " (killed out of memory)" } else { "" }
            ));
        }
    }
    let problems: Vec<String> = down.iter().chain(&restarted).cloned().collect();
    let (status, fix) = if !down.is_empty() {
        (Status::Fail, "cargo xtask logs SERVICE --tail 50 names why; cargo xtask restart SERVICE, or start")
    } else if !restarted.is_empty() {
        (
            Status::Warn,
            "cargo xtask logs SERVICE --since 1h shows each crash; out of memory: raise SERVICE_MEMORY_LIMIT",
        )
    } else {
        (Status::Ok, "")
    };
    let detail = if problems.is_empty() {
        format!("{} containers running, none unhealthy or restarted", all.len())
    } else {
        problems.join("; ")
    };
    finding("containers", "containers", status, detail, (!fix.is_empty()).then_some(fix))
}

struct Db<'a> {
    docker: &'a Docker,
    container: &'a str,
}

impl Db<'_> {
    async fn rows(&self, sql: &str) -> Result<Vec<String>> {
        Ok(psql(Pg::Container(self.docker, self.container), sql)
            .await?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn number(&self, sql: &str) -> Result<i64> {
        let rows = self.rows(sql).await?;
        Ok(rows.first().and_then(|r| r.trim().parse().ok()).unwrap_or_default())
    }

    async fn connections(&self) -> Check {
        let sql = "SELECT count(*) || ' ' || current_setting('max_connections') FROM pg_stat_activity \
                   WHERE backend_type = 'client backend'";
        let row = match self.rows(sql).await {
            Ok(rows) => rows.into_iter().next().unwrap_or_default(),
            Err(e) => return unknown("connections", "database connections", e),
        };
        let mut numbers = row.split_whitespace().filter_map(|n| n.parse::<i64>().ok());
        let (used, max) = (numbers.next().unwrap_or_default(), numbers.next().unwrap_or(100).max(1));
        let status = match used * 100 / max {
            95.. => Status::Fail,
            80.. => Status::Warn,
            _ => Status::Ok,
        };
        let fix = "connections pile up: cargo xtask restart app frees its pool; or raise PostgreSQL's max_connections";
        finding(
            "connections",
            "database connections",
            status,
            format!("{used} of {max} in use"),
            (status != Status::Ok).then_some(fix),
        )
    }

    async fn long_queries(&self, limit: Duration) -> Check {
        // The statements' text is not shown: it may hold what users searched for.
        let sql = format!(
            "SELECT pid || ' ' || extract(epoch FROM now() - query_start)::bigint || ' ' || coalesce(usename, '?') \
             FROM pg_stat_activity WHERE state <> 'idle' AND backend_type = 'client backend' \
             AND pid <> pg_backend_pid() AND now() - query_start > make_interval(secs => {}) ORDER BY query_start",
            limit.as_secs_f64()
        );
        let rows = match self.rows(&sql).await {
            Ok(rows) => rows,
            Err(e) => return unknown("long-queries", "long-running queries", e),
        };
        let described: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let mut w = r.split_whitespace();
                Some(format!("pid {} running {} s as {}", w.next()?, w.next()?, w.next()?))
            })
            .collect();
        if described.is_empty() {
            return finding(
                "long-queries",
                "long-running queries",
                Status::Ok,
                format!("none over {} s", limit.as_secs()),
                None,
            );
        }
        finding(
            "long-queries",
            "long-running queries",
            Status::Warn,
            described.join("; "),
            Some(
                "cancel one with SELECT pg_cancel_backend(PID) (psql in the postgres container); pg_terminate_backend(PID) ends its session",
            ),
        )
    }

    async fn lock_waits(&self) -> Check {
        let sql = "SELECT pid || ' ' || extract(epoch FROM now() - query_start)::bigint || ' ' || \
                   coalesce(nullif(array_to_string(pg_blocking_pids(pid), ','), ''), '?') \
                   FROM pg_stat_activity WHERE wait_event_type = 'Lock' ORDER BY query_start";
        let rows = match self.rows(sql).await {
            Ok(rows) => rows,
            Err(e) => return unknown("lock-waits", "lock waits", e),
        };
        let described: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let mut w = r.split_whitespace();
                Some(format!("pid {} waits {} s on pid {}", w.next()?, w.next()?, w.next()?))
            })
            .collect();
        if described.is_empty() {
            return finding("lock-waits", "lock waits", Status::Ok, "no session waits for a lock", None);
        }
        finding(
            "lock-waits",
            "lock waits",
            Status::Warn,
            described.join("; "),
            Some("end the blocking session: SELECT pg_terminate_backend(PID) with the pid it waits on"),
        )
    }

    /// The last backup recorded (`backup_runs`), and whether WAL archiving keeps up.
    async fn backups(&self) -> Check {
        const NAME: &str = "backups";
        let last = "SELECT coalesce(extract(epoch FROM now() - max(finished_at))::bigint, -1) FROM backup_runs \
                    WHERE kind = 'archive'";
        let archiver = "SELECT current_setting('archive_mode') || ' ' || failed_count || ' ' || \
                        (coalesce(last_failed_time, 'epoch') > coalesce(last_archived_time, 'epoch')) FROM pg_stat_archiver";
        let (age, archiver) = match (self.number(last).await, self.rows(archiver).await) {
            (Ok(a), Ok(r)) => (a, r.into_iter().next().unwrap_or_default()),
            (Err(e), _) | (_, Err(e)) => return unknown("backups", NAME, e),
        };
        let mut words = archiver.split_whitespace();
        let (mode, failures, failing) =
            (words.next().unwrap_or("off"), words.next().unwrap_or("0"), words.next() == Some("t"));
        let wal = if mode == "off" { "WAL archiving off" } else { "WAL archived" };
        if mode != "off" && failing {
            return finding(
                "backups",
                NAME,
                Status::Fail,
                format!(
                    "WAL archiving fails ({failures} failures, the last after the last success): point-in-time recovery stops at the last archived segment"
                ),
                Some(
                    "cargo xtask logs postgres shows the archive command's error; is the postgres_archive volume's disk full?",
                ),
            );
        }
        match age {
            ..0 => finding(
                "backups",
                NAME,
                Status::Warn,
                format!("no backup recorded; {wal}"),
                Some("cargo xtask backup, and schedule it nightly (docs/operations.md, Schedule and retention)"),
            ),
            93_600.. => finding(
                "backups",
                NAME,
                Status::Warn,
                format!("the last backup is {} hours old; {wal}", age / 3600),
                Some("the nightly backup stopped or fails: run cargo xtask backup and read its error"),
            ),
            _ => finding("backups", NAME, Status::Ok, format!("last backup {} minutes ago; {wal}", age / 60), None),
        }
    }

    async fn queue(&self) -> Check {
        let states = "SELECT state || ' ' || count(*) FROM ingest_jobs GROUP BY state ORDER BY state";
        let stuck = "SELECT count(*) FROM ingest_jobs WHERE (state = 'running' AND lease_expires_at < now() - interval '5 minutes') \
                     OR (state = 'queued' AND next_attempt_at < now() - interval '10 minutes')";
        let (states, stuck) = match (self.rows(states).await, self.number(stuck).await) {
            (Ok(s), Ok(n)) => (s, n),
            (Err(e), _) | (_, Err(e)) => return unknown("queue", "ingest queue", e),
        };
        let depth = if states.is_empty() { "no jobs".to_string() } else { states.join(", ") };
        if stuck == 0 {
            return finding("queue", "ingest queue", Status::Ok, depth, None);
        }
        finding(
            "queue",
            "ingest queue",
            Status::Warn,
            format!("{stuck} stuck (due for over 10 minutes, or running past their lease); {depth}"),
            Some("no app worker takes them: is the app running and ready? (cargo xtask ps; cargo xtask logs app)"),
        )
    }

    async fn orphan_chunks(&self) -> Check {
        let sql =
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM knowledge k WHERE k.id = c.knowledge_id)";
        match self.number(sql).await {
            Err(e) => unknown("orphan-chunks", "chunks without documents", e),
            Ok(0) => finding("orphan-chunks", "chunks without documents", Status::Ok, "none", None),
            Ok(n) => finding(
                "orphan-chunks",
                "chunks without documents",
                Status::Warn,
                format!(
                    "{n} chunks belong to no document (a document deleted with its foreign keys off): search may \
                     answer with them, and a backup of this database does not restore"
                ),
                Some(
                    "DELETE FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM knowledge k WHERE k.id = c.knowledge_id); \
                     DELETE FROM ingest_jobs j WHERE NOT EXISTS (SELECT 1 FROM knowledge k WHERE k.id = j.knowledge_id)",
                ),
            ),
        }
    }

    async fn missing_vectors(&self) -> Check {
        let sql = "SELECT CASE WHEN to_regclass('public.chunk_embeddings') IS NULL THEN -1 ELSE ( \
                   SELECT count(DISTINCT k.id) FROM knowledge k JOIN chunks c ON c.knowledge_id = k.id \
                   WHERE k.vector_status = 'completed' AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e WHERE e.chunk_id = c.id)) END";
        match self.number(sql).await {
            Err(e) => unknown("missing-vectors", "documents without vectors", e),
            Ok(-1) => finding(
                "missing-vectors",
                "documents without vectors",
                Status::Skip,
                "no pgvector: keyword search only",
                None,
            ),
            Ok(0) => finding(
                "missing-vectors",
                "documents without vectors",
                Status::Ok,
                "every indexed document has its vectors",
                None,
            ),
            Ok(n) => finding(
                "missing-vectors",
                "documents without vectors",
                Status::Warn,
                format!("{n} documents marked indexed lack vectors for some chunks: semantic search misses them"),
                Some("cargo xtask reindex (or --kb ID) makes them again"),
            ),
        }
    }

    /// Documents whose stored file is gone, and stored files no document names (local
    /// storage only: a bucket is checked with its own tools).
    async fn files(&self, app: Option<&Container>) -> Vec<Check> {
        let (missing_id, missing_name) = ("missing-files", "documents without files");
        let (orphan_id, orphan_name) = ("orphan-files", "files without documents");
        let storage = Vars::load().get("STORAGE_TYPE").unwrap_or("local").to_string();
        if storage != "local" {
            let why = format!("STORAGE_TYPE={storage}: the files are in the bucket");
            return vec![
                finding(missing_id, missing_name, Status::Skip, why.clone(), None),
                finding(orphan_id, orphan_name, Status::Skip, why, None),
            ];
        }
        let Some(app) = app else {
            let why = "no app container to read the files from";
            return vec![
                finding(missing_id, missing_name, Status::Skip, why, None),
                finding(orphan_id, orphan_name, Status::Skip, why, None),
            ];
        };
        let listed = async {
            let keys = self.rows("SELECT object_key FROM knowledge WHERE coalesce(object_key, '') <> ''").await?;
            Ok::<_, anyhow::Error>((keys, stored_files(self.docker, &app.name).await?))
        };
        let (keys, files) = match listed.await {
            Ok(both) => both,
            Err(e) => {
                let why = format!("{e:#}");
                return vec![
                    finding(missing_id, missing_name, Status::Skip, format!("could not check: {why}"), None),
                    finding(orphan_id, orphan_name, Status::Skip, format!("could not check: {why}"), None),
                ];
            }
        };
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let missing: Vec<&String> = keys.iter().filter(|k| !files.contains(*k)).collect();
        let orphans: Vec<&String> = files.iter().filter(|f| !keys.contains(*f)).collect();
        let some = |list: &[&String]| {
            let shown: Vec<&str> = list.iter().take(5).map(|s| s.as_str()).collect();
            format!("{}: {}{}", list.len(), shown.join(", "), if list.len() > 5 { ", ..." } else { "" })
        };
        vec![
            if missing.is_empty() {
                finding(
                    missing_id,
                    missing_name,
                    Status::Ok,
                    format!("all {} stored files are there", keys.len()),
                    None,
                )
            } else {
                finding(
                    missing_id,
                    missing_name,
                    Status::Warn,
                    format!("files gone from app_data, {}", some(&missing)),
                    Some(
                        "reparse and download fail for them: restore the files from a backup (cargo xtask restore), or upload again",
                    ),
                )
            },
            if orphans.is_empty() {
                finding(orphan_id, orphan_name, Status::Ok, "none", None)
            } else {
                finding(
                    orphan_id,
                    orphan_name,
                    Status::Warn,
                    format!("files in app_data no document names, {}", some(&orphans)),
                    Some(
                        "left by an interrupted upload or delete: after a backup, delete them from the app_data volume",
                    ),
                )
            },
        ]
    }
}

/// The paths of the uploaded files under the app's storage folder.
async fn stored_files(docker: &Docker, app: &str) -> Result<BTreeSet<String>> {
    let dir = tempfile::tempdir()?;
    let tar_path = dir.path().join("files.tar");
    download(docker, app, FILES_IN_APP, &tar_path).await?;
    let mut files = BTreeSet::new();
    if !tar_path.exists() {
        return Ok(files);
    }
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_path)?);
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            // Entries are `files/<key>`.
            let path = entry.path()?.to_string_lossy().to_string();
            if let Some((_, key)) = path.split_once('/') {
                files.insert(key.to_string());
            }
        }
    }
    Ok(files)
}

/// The project's volumes and their sizes, and the free space where Docker keeps them.
async fn volumes(docker: &Docker, project: &str) -> Check {
    let (id, name) = ("volumes", "volumes and disk");
    let filters = std::collections::HashMap::from([("label", vec![format!("com.docker.compose.project={project}")])]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&filters).build();
    let listed = match docker.list_volumes(Some(options)).await {
        Ok(listed) => listed.volumes.unwrap_or_default(),
        Err(e) => return unknown(id, name, e.into()),
    };
    let mut sizes: Vec<String> = listed
        .into_iter()
        .map(|v| {
            let short = v.labels.get("com.docker.compose.volume").cloned().unwrap_or(v.name);
            // What the files in it take, where this user may read Docker's folder.
            let size = folder_bytes(std::path::Path::new(&v.mountpoint));
            format!("{short} {}", size.map_or("(size unreadable here)".into(), human_bytes))
        })
        .collect();
    sizes.sort();
    let root = docker.info().await.ok().and_then(|i| i.docker_root_dir).unwrap_or_else(|| "/var/lib/docker".into());
    let free = disk::free(std::path::Path::new(&root)).map(|(_, bytes)| bytes);
    let status = match free {
        Some(b) if b < DISK_FAIL_BYTES => Status::Fail,
        Some(b) if b < DISK_WARN_BYTES => Status::Warn,
        _ => Status::Ok,
    };
    let free_text = free.map_or("free space unknown".to_string(), |b| format!("{} free under {root}", human_bytes(b)));
    let detail = if sizes.is_empty() { free_text } else { format!("{}; {free_text}", sizes.join(", ")) };
    let fix = "free space: `docker system prune` (unused images and build cache), old backups in BACKUP_DIR; or grow the disk";
    finding(id, name, status, detail, (status != Status::Ok).then_some(fix))
}

/// The bytes of the files under `dir`; None when it cannot be read.
fn folder_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        total += if meta.is_dir() { folder_bytes(&entry.path())? } else { meta.len() };
    }
    Some(total)
}

/// Error lines in the last minutes of our services' logs.
async fn log_errors(docker: &Docker, all: &[Container], window: Duration) -> Check {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().saturating_sub(window).as_secs();
    let mut counts = Vec::new();
    for c in all.iter().filter(|c| ["app", "app-dev", "docreader", "embedder"].contains(&c.service.as_str())) {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).since(since as i32).build();
        let mut stream = docker.logs(&c.id, Some(options));
        let mut errors = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            errors += String::from_utf8_lossy(&chunk.into_bytes()).lines().filter(|l| is_error(l)).count();
        }
        if errors > 0 {
            counts.push(format!("{} {errors}", c.service));
        }
    }
    let minutes = window.as_secs() / 60;
    if counts.is_empty() {
        return finding(
            "log-errors",
            "errors in the logs",
            Status::Ok,
            format!("none in the last {minutes} min"),
            None,
        );
    }
    finding(
        "log-errors",
        "errors in the logs",
        Status::Warn,
        format!("in the last {minutes} min: {}", counts.join(", ")),
        Some("cargo xtask logs SERVICE --since 15m shows them, with their request_id and trace_id"),
    )
}

/// A log line at error level: JSON (`"level":"ERROR"`) or text (the level after the time).
fn is_error(line: &str) -> bool {
    if line.trim_start().starts_with('{') {
        line.contains("\"level\":\"ERROR\"")
    } else {
        line.split_whitespace().nth(1) == Some("ERROR")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_read_in_both_log_formats() {
        assert!(is_error(r#"{"timestamp":"2026-12-01T00:00:00Z","level":"ERROR","message":"database error"}"#));
        assert!(is_error("2026-12-01T00:00:00.000000Z ERROR database error"));
        assert!(!is_error(r#"{"level":"WARN","message":"an ERROR word in a warning"}"#));
    }
}
