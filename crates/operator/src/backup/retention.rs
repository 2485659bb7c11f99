//! `backup prune`: which backups to keep, and removing the rest. Kept: the newest backup of
//! each of the last N days that have one, the newest of each of the last M weeks (ISO weeks,
//! Monday to Sunday, UTC), and always the newest of all. The same policy applies to the
//! archives in the backup folder and to the base backups of point-in-time recovery; WAL
//! older than the oldest base backup kept can serve no recovery and goes with them.
//! Archives with a label (`before-restore`, `before-upgrade`) are the undo of a command and
//! are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use super::pitr::{self, Base};
use crate::dotenv::Vars;
use crate::pg::Pg;

/// How many daily and weekly backups to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Policy {
    pub daily: usize,
    pub weekly: usize,
}

/// The times (Unix seconds) the policy keeps, of those given.
pub fn keep(times: &[u64], policy: Policy) -> BTreeSet<u64> {
    let mut newest_first = times.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    let mut kept = BTreeSet::new();
    let (mut days, mut weeks) = (BTreeSet::new(), BTreeSet::new());
    for (i, &t) in newest_first.iter().enumerate() {
        let day = t / 86_400;
        // 1970-01-01 was a Thursday: shifting by 3 days starts each week on a Monday.
        let week = (day + 3) / 7;
        let mut keep = i == 0;
        if days.len() < policy.daily && days.insert(day) {
            keep = true;
        }
        if weeks.len() < policy.weekly && weeks.insert(week) {
            keep = true;
        }
        if keep {
            kept.insert(t);
        }
    }
    kept
}

/// An archive `take` named for `project` with no label: its time.
fn unlabelled_archive_time(name: &str, project: &str) -> Option<u64> {
    let rest = name.strip_prefix(&format!("weknora-{project}-"))?;
    let rest = rest.strip_suffix(".tar.age").or_else(|| rest.strip_suffix(".tar"))?;
    let (stamp, tail) = rest.split_at_checked(16)?;
    // Nothing after the time but a collision counter (`-2`).
    let plain = tail.is_empty() || tail.strip_prefix('-').is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
    if plain { crate::utc::parse_stamp(stamp) } else { None }
}

/// The project's unlabelled archives in `dir`, with their times.
pub(crate) fn archives(dir: &Path, project: &str) -> Result<Vec<(PathBuf, u64)>> {
    let Ok(listing) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    for entry in listing {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if let Some(t) = unlabelled_archive_time(&name, project) {
            found.push((path, t));
        }
    }
    Ok(found)
}

/// Removes base backups $2... and then the WAL before the oldest one kept ($1).
const PRUNE_BASES: &str = r#"set -e
a=/var/lib/postgresql/archive; kept="$1"; shift
for b in "$@"; do rm -rf "$a/base/$b"; done
if [ -n "$kept" ] && [ -s "$a/base/$kept/first-wal" ]; then
    pg_archivecleanup "$a/wal" "$(cat "$a/base/$kept/first-wal")"
fi"#;

/// The policy from the options, else BACKUP_KEEP_DAILY and BACKUP_KEEP_WEEKLY (.env or the
/// environment), else 7 days and 4 weeks.
pub fn policy(vars: &Vars, keep_daily: Option<usize>, keep_weekly: Option<usize>) -> Result<Policy> {
    let setting = |given: Option<usize>, var: &str, default: usize| -> Result<usize> {
        match (given, vars.get(var).filter(|v| !v.trim().is_empty())) {
            (Some(n), _) => Ok(n),
            (None, Some(v)) => v.trim().parse().with_context(|| {
                format!("{var}={v} is not a number of backups: set it in .env to a whole number, e.g. {default}")
            }),
            (None, None) => Ok(default),
        }
    };
    Ok(Policy {
        daily: setting(keep_daily, "BACKUP_KEEP_DAILY", 7)?,
        weekly: setting(keep_weekly, "BACKUP_KEEP_WEEKLY", 4)?,
    })
}

/// What `backup prune` removed (or would).
#[derive(Debug, Serialize)]
pub struct Pruned {
    pub policy: Policy,
    pub archives_kept: Vec<PathBuf>,
    pub archives_removed: Vec<PathBuf>,
    pub base_backups_kept: Vec<String>,
    pub base_backups_removed: Vec<String>,
}

/// `backup prune`.
pub async fn run(
    dir: &Path,
    keep_daily: Option<usize>,
    keep_weekly: Option<usize>,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> Result<ExitCode> {
    let vars = Vars::load();
    let policy = policy(&vars, keep_daily, keep_weekly)?;
    let docker = crate::docker::connect_for_transfers().await?;
    let project = crate::docker::project_name(&vars).to_ascii_lowercase();
    let postgres = crate::containers::Parts::find(&docker, &project).await.ok().map(|p| p.postgres.name);
    if postgres.is_none() {
        eprintln!("note: postgres is not running: its base backups and WAL are left as they are");
    }
    let pg = postgres.as_deref().map(|name| Pg::Container(&docker, name));
    let Some(p) = prune(pg, &project, dir, policy, dry_run, yes, json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "kept {} archives and {} base backups; deleted {} archives and {} base backups",
            p.archives_kept.len(),
            p.base_backups_kept.len(),
            p.archives_removed.len(),
            p.base_backups_removed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies the policy to the archives in `dir` and, with `pg`, to the base backups and WAL
/// of the stack's postgres; None when --dry-run or a refusal only printed the plan.
pub(crate) async fn prune(
    pg: Option<Pg<'_>>,
    project: &str,
    dir: &Path,
    policy: Policy,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> Result<Option<Pruned>> {
    let found = archives(dir, project)?;
    let kept = keep(&found.iter().map(|(_, t)| *t).collect::<Vec<_>>(), policy);
    let (mut archives_kept, mut archives_removed) = (Vec::new(), Vec::new());
    for (path, t) in found {
        if kept.contains(&t) { archives_kept.push(path) } else { archives_removed.push(path) }
    }
    archives_kept.sort();
    archives_removed.sort();

    let bases: Vec<Base> = match pg {
        Some(pg) => pitr::list(pg).await?,
        None => Vec::new(),
    };
    let base_times: Vec<u64> = bases.iter().filter_map(|b| crate::utc::parse_stamp(&b.name)).collect();
    let kept = keep(&base_times, policy);
    let (mut base_backups_kept, mut base_backups_removed) = (Vec::new(), Vec::new());
    for b in &bases {
        match crate::utc::parse_stamp(&b.name) {
            Some(t) if !kept.contains(&t) => base_backups_removed.push(b.name.clone()),
            _ => base_backups_kept.push(b.name.clone()),
        }
    }

    let mut plan: Vec<String> = archives_removed.iter().map(|p| format!("delete {}", p.display())).collect();
    plan.extend(base_backups_removed.iter().map(|b| format!("delete base backup {b} and the WAL only it needs")));
    let pruned = Pruned { policy, archives_kept, archives_removed, base_backups_kept, base_backups_removed };
    if plan.is_empty() {
        return Ok(Some(pruned));
    }
    if !crate::confirm::go_ahead("backup prune", &plan, dry_run, yes, json)? {
        return Ok(None);
    }
    for path in &pruned.archives_removed {
        std::fs::remove_file(path).with_context(|| format!("deleting {}", path.display()))?;
    }
    if let Some(pg) = pg {
        let oldest_kept = pruned.base_backups_kept.first().map_or("", String::as_str);
        let mut args = vec![oldest_kept];
        args.extend(pruned.base_backups_removed.iter().map(String::as_str));
        pg.sh("deleting base backups", PRUNE_BASES, &args).await?;
    }
    Ok(Some(pruned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::utc::stamp;

    const DAY: u64 = 86_400;
    /// Monday 2026-11-02 00:00 UTC.
    const NOV_2: u64 = 1_793_577_600;

    #[test]
    fn a_month_of_nightly_backups_keeps_seven_days_and_four_weeks() {
        assert_eq!(crate::utc::rfc3339(NOV_2), "2026-11-02T00:00:00Z");
        // Nightly at 02:00 from Monday 2 November to Monday 30 November, and on 10 and 25
        // November a second one by hand at 15:00.
        let mut times: Vec<u64> = (0..29).map(|d| NOV_2 + d * DAY + 2 * 3600).collect();
        times.push(NOV_2 + 8 * DAY + 15 * 3600);
        times.push(NOV_2 + 23 * DAY + 15 * 3600);
        let kept: Vec<String> = keep(&times, Policy { daily: 7, weekly: 4 }).into_iter().map(stamp).collect();
        assert_eq!(
            kept,
            [
                // Four weeks: the 30th (a Monday) opens one, the 29th holds the week of the 23rd,
                // then the Sundays closing the weeks of the 16th and the 9th (the 10th's extra one
                // is older than the 15th's nightly). The week of the 2nd is one too many.
                "20261115T020000Z",
                "20261122T020000Z",
                // The last seven days, 24 to 30 November: the 25th's newest is its 15:00 one.
                "20261124T020000Z",
                "20261125T150000Z",
                "20261126T020000Z",
                "20261127T020000Z",
                "20261128T020000Z",
                "20261129T020000Z",
                "20261130T020000Z",
            ]
        );
        // Nothing kept beyond the newest; none lost with a generous policy.
        let newest = keep(&times, Policy { daily: 0, weekly: 0 });
        assert_eq!(newest.into_iter().map(stamp).collect::<Vec<_>>(), ["20261130T020000Z"]);
        assert_eq!(keep(&times, Policy { daily: 100, weekly: 100 }).len(), 29, "the newest of each day");
    }

    #[test]
    fn only_the_projects_unlabelled_archives_are_candidates() {
        let t = crate::utc::parse_stamp("20261130T020000Z").unwrap();
        assert_eq!(crate::utc::rfc3339(t), "2026-11-30T02:00:00Z");
        assert_eq!(unlabelled_archive_time("weknora-prod-20261130T020000Z.tar", "prod"), Some(t));
        assert_eq!(unlabelled_archive_time("weknora-prod-20261130T020000Z-2.tar.age", "prod"), Some(t));
        for other in [
            "weknora-prod-20261130T020000Z-before-upgrade.tar",
            "weknora-prod-eu-20261130T020000Z.tar",
            "weknora-prod-20261130T020000Z.tar.partial",
            "weknora-prod-20261131T020000Z.tar",
            "notes.txt",
        ] {
            assert_eq!(unlabelled_archive_time(other, "prod"), None, "{other}");
        }
    }
}
