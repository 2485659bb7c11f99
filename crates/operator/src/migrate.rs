//! `cargo xtask migrate up|down|create|status`: the schema, through sqlx's Migrator (its
//! advisory lock makes concurrent runs safe; its `_sqlx_migrations` table is the one
//! sqlx-cli reads), with refusals that say what went wrong and what to do.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde::Serialize;
use sqlx::migrate::{Migrate as _, MigrateError, Migration, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use crate::database::DbTarget;
use crate::dotenv::Vars;
use crate::paths;

#[derive(clap::Args)]
pub struct Migrate {
    #[command(subcommand)]
    command: MigrateCommand,
    /// The migrations folder (default: the checkout's or the bundle's `migrations/`). Found
    /// when the command runs, never while the command line is read: only then is the root known.
    #[arg(long, global = true, value_name = "DIR")]
    source: Option<PathBuf>,
}

impl Migrate {
    fn source(&self) -> PathBuf {
        self.source.clone().unwrap_or_else(paths::migrations)
    }
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Apply pending migrations (all, or up to and including --to).
    Up {
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Show what would be applied, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Revert applied migrations: the last one by default. Drops tables and their data.
    Down {
        /// How many of the most recent migrations to revert.
        #[arg(long, conflicts_with = "to")]
        steps: Option<usize>,
        /// Revert every migration newer than VERSION (`--to 0`: all of them).
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Show what would be reverted, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Confirm: reverting drops data.
        #[arg(long)]
        yes: bool,
    },
    /// Write a new timestamped pair NAME.up.sql / NAME.down.sql.
    Create { name: String },
    /// Every migration with its state: applied or pending, when, checksum, dirty.
    Status {
        #[arg(long)]
        json: bool,
    },
}

impl Migrate {
    pub fn run(self) -> Result<ExitCode> {
        if let MigrateCommand::Create { name } = &self.command {
            return create(&self.source(), name, now_stamp()).map(|_| ExitCode::SUCCESS);
        }
        let rt = crate::host::runtime()?;
        rt.block_on(self.run_db())
    }

    async fn run_db(self) -> Result<ExitCode> {
        let migrator = load(&self.source()).await?;
        let target = DbTarget::from_vars(&Vars::load())?;
        let mut conn = target.connect().await?;
        if matches!(self.command, MigrateCommand::Up { .. } | MigrateCommand::Down { .. }) {
            // sqlx's own advisory lock (re-entrant within this session): held from before we
            // read the state until after we report it, so concurrent runs report truthfully.
            // Closing the connection releases it whatever happens.
            conn.lock().await.map_err(|e| anyhow!(target.redact(&format!("taking the migration lock: {e}"))))?;
        }
        let result = match self.command {
            MigrateCommand::Up { to, dry_run } => up(&migrator, &mut conn, to, dry_run).await,
            MigrateCommand::Down { steps, to, dry_run, yes } => {
                down(&migrator, &mut conn, steps, to, dry_run, yes).await
            }
            MigrateCommand::Status { json } => status(&migrator, &mut conn, json).await,
            MigrateCommand::Create { .. } => unreachable!("handled without a database"),
        };
        let _ = conn.close().await;
        result.map_err(|e| anyhow!(target.redact(&format!("{e:#}"))))
    }
}

/// The version of the newest migration in `source` (0 when there is none).
pub async fn latest_version(source: &Path) -> Result<i64> {
    Ok(load(source).await?.iter().map(|m| m.version).max().unwrap_or(0))
}

async fn load(source: &Path) -> Result<Migrator> {
    let source = source.canonicalize().with_context(|| format!("migrations folder {} not found", source.display()))?;
    Migrator::new(source.clone()).await.with_context(|| format!("reading migrations from {}", source.display()))
}

/// A row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    pub installed_on: String,
    pub success: bool,
    pub checksum: Vec<u8>,
}

async fn applied(conn: &mut PgConnection) -> Result<Vec<Applied>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, description, to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS installed_on, \
         success, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .context("reading _sqlx_migrations")?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get("version"),
            description: r.get("description"),
            installed_on: r.get("installed_on"),
            success: r.get("success"),
            checksum: r.get("checksum"),
        })
        .collect())
}

fn ups(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator.iter().filter(|m| !m.migration_type.is_down_migration())
}

fn file_of(m: &Migration, source_hint: &str) -> String {
    format!("{source_hint}/{}_{}.up.sql", m.version, m.description.replace(' ', "_"))
}

/// The first problem that makes applying or reverting unsafe, as sqlx would find it,
/// explained for an operator.
pub fn refusal(migrator: &Migrator, applied: &[Applied]) -> Option<String> {
    if let Some(dirty) = applied.iter().find(|a| !a.success) {
        return Some(format!(
            "migration {} ({}) is dirty: it failed part-way and left the schema half-changed. \
             Repair the schema by hand (or restore the last backup), then delete its row: \
             DELETE FROM _sqlx_migrations WHERE version = {}; and run `cargo xtask migrate up` again",
            dirty.version, dirty.description, dirty.version
        ));
    }
    let known: BTreeMap<i64, &Migration> = ups(migrator).map(|m| (m.version, m)).collect();
    for a in applied {
        match known.get(&a.version) {
            None => {
                return Some(format!(
                    "the database has migration {} ({}) applied, which this checkout does not know: \
                     it was migrated by newer code. Run the release that matches the database, \
                     or restore the migration file; never migrate an older checkout over it",
                    a.version, a.description
                ));
            }
            Some(m) if *m.checksum != *a.checksum => {
                return Some(format!(
                    "migration {} ({}) was changed after it was applied (checksum differs). \
                     Restore the original file (`git checkout -- {}`) and put the change in a new migration (`cargo xtask migrate create NAME`)",
                    a.version,
                    a.description,
                    file_of(m, "migrations")
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Maps sqlx's errors to the same explanations, for races where the state changed between
/// our look and sqlx's.
fn explain(e: MigrateError, migrator: &Migrator, applied: &[Applied]) -> anyhow::Error {
    match e {
        MigrateError::Dirty(_) | MigrateError::VersionMissing(_) | MigrateError::VersionMismatch(_) => {
            anyhow!(refusal(migrator, applied).unwrap_or_else(|| e.to_string()))
        }
        MigrateError::ExecuteMigration(err, version) => {
            let m = migrator.iter().find(|m| m.version == version);
            let name = m.map(|m| m.description.to_string()).unwrap_or_default();
            if m.is_some_and(|m| m.no_tx) {
                anyhow!(
                    "migration {version} ({name}) failed: {err}. It runs outside a transaction (-- no-transaction), \
                     so check what it changed before fixing it and running `cargo xtask migrate` again"
                )
            } else {
                anyhow!(
                    "migration {version} ({name}) failed and was rolled back; the database is as it was before it: {err}. \
                     Fix the migration (it was never recorded as applied, so editing it is safe) and run `cargo xtask migrate` again"
                )
            }
        }
        other => anyhow!(other),
    }
}

async fn up(migrator: &Migrator, conn: &mut PgConnection, to: Option<i64>, dry_run: bool) -> Result<ExitCode> {
    let before = applied(conn).await?;
    if let Some(why) = refusal(migrator, &before) {
        bail!(why);
    }
    if let Some(v) = to.filter(|v| *v != 0 && !ups(migrator).any(|m| m.version == *v)) {
        bail!("--to {v}: no such migration (see `cargo xtask migrate status`)");
    }
    let pending: Vec<&Migration> = ups(migrator)
        .filter(|m| to.is_none_or(|t| m.version <= t))
        .filter(|m| !before.iter().any(|a| a.version == m.version))
        .collect();
    if dry_run {
        if pending.is_empty() {
            eprintln!("migrate up --dry-run: nothing to apply, the schema is current");
        }
        for m in &pending {
            println!("would apply {} {}", m.version, m.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("migrate up: {} pending", pending.len());
    let result = match to {
        Some(t) => migrator.run_to(t, &mut *conn).await,
        None => migrator.run(&mut *conn).await,
    };
    result.map_err(|e| explain(e, migrator, &before))?;
    let after = applied(conn).await?;
    let new: Vec<&Applied> = after.iter().filter(|a| !before.iter().any(|b| b.version == a.version)).collect();
    for a in &new {
        println!("applied {} {}", a.version, a.description);
    }
    if new.is_empty() {
        eprintln!("migrate up: nothing to apply, the schema is current");
    }
    print_capabilities(&capabilities(conn).await?);
    Ok(ExitCode::SUCCESS)
}

/// The version to revert down to: `--to` as given, else the version below the `steps`
/// most recent applied ones (0 when that is all of them).
pub fn down_target(applied_versions: &[i64], steps: Option<usize>, to: Option<i64>) -> i64 {
    if let Some(to) = to {
        return to;
    }
    let mut versions = applied_versions.to_vec();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.get(steps.unwrap_or(1)).copied().unwrap_or(0)
}

async fn down(
    migrator: &Migrator,
    conn: &mut PgConnection,
    steps: Option<usize>,
    to: Option<i64>,
    dry_run: bool,
    yes: bool,
) -> Result<ExitCode> {
    if steps == Some(0) {
        bail!("--steps 0 reverts nothing: give 1 or more");
    }
    let before = applied(conn).await?;
    if let Some(why) = refusal(migrator, &before) {
        bail!(why);
    }
    let versions: Vec<i64> = before.iter().map(|a| a.version).collect();
    let target = down_target(&versions, steps, to);
    let reverting: Vec<&Applied> = before.iter().rev().filter(|a| a.version > target).collect();
    let downs: Vec<i64> = migrator.iter().filter(|m| m.migration_type.is_down_migration()).map(|m| m.version).collect();
    if let Some(a) = reverting.iter().find(|a| !downs.contains(&a.version)) {
        bail!(
            "migration {} ({}) has no .down.sql, so it cannot be reverted: restore from a backup instead",
            a.version,
            a.description
        );
    }
    if reverting.is_empty() {
        eprintln!("migrate down: nothing to revert");
        return Ok(ExitCode::SUCCESS);
    }
    if dry_run || !yes {
        for a in &reverting {
            println!("would revert {} {}", a.version, a.description);
        }
        if !dry_run {
            bail!(
                "reverting drops these migrations' tables and their data: run again with --yes to do it (back up first)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    migrator.undo(&mut *conn, target).await.map_err(|e| explain(e, migrator, &before))?;
    for a in &reverting {
        println!("reverted {} {}", a.version, a.description);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StatusRow {
    pub version: i64,
    pub name: String,
    /// `applied`, `pending`, `dirty`, or `unknown` (applied, but not in this checkout).
    pub state: &'static str,
    pub applied_at: Option<String>,
    /// Whether the file still matches what was applied; `None` when not applied.
    pub checksum_ok: Option<bool>,
    pub dirty: bool,
}

pub fn status_rows(migrator: &Migrator, applied: &[Applied]) -> Vec<StatusRow> {
    let mut rows: BTreeMap<i64, StatusRow> = BTreeMap::new();
    for m in ups(migrator) {
        rows.insert(
            m.version,
            StatusRow {
                version: m.version,
                name: m.description.to_string(),
                state: "pending",
                applied_at: None,
                checksum_ok: None,
                dirty: false,
            },
        );
    }
    for a in applied {
        let known = ups(migrator).find(|m| m.version == a.version);
        rows.insert(
            a.version,
            StatusRow {
                version: a.version,
                name: a.description.clone(),
                state: if !a.success {
                    "dirty"
                } else if known.is_none() {
                    "unknown"
                } else {
                    "applied"
                },
                applied_at: Some(a.installed_on.clone()),
                checksum_ok: known.map(|m| *m.checksum == *a.checksum),
                dirty: !a.success,
            },
        );
    }
    rows.into_values().collect()
}

async fn status(migrator: &Migrator, conn: &mut PgConnection, json: bool) -> Result<ExitCode> {
    let applied = applied(conn).await?;
    let rows = status_rows(migrator, &applied);
    let problem = refusal(migrator, &applied);
    let caps = capabilities(conn).await?;
    if json {
        let out = serde_json::json!({ "ok": problem.is_none(), "problem": problem, "migrations": rows, "capabilities": caps });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{:<16} {:<20} {:<8} {:<21} CHECKSUM", "VERSION", "NAME", "STATE", "APPLIED AT");
        for r in &rows {
            let checksum = match r.checksum_ok {
                Some(true) => "ok",
                Some(false) => "CHANGED",
                None => "-",
            };
            println!(
                "{:<16} {:<20} {:<8} {:<21} {}",
                r.version,
                r.name,
                r.state,
                r.applied_at.as_deref().unwrap_or("-"),
                checksum
            );
        }
        eprintln!();
        print_capabilities(&caps);
        if let Some(p) = &problem {
            eprintln!("\nproblem: {p}");
        }
    }
    Ok(if problem.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// An optional part of the schema that depends on a server extension.
struct OptionalPart {
    feature: &'static str,
    extension: &'static str,
    /// The table or index the guarded migration creates.
    object: &'static str,
    migration: &'static str,
}

const OPTIONAL_PARTS: &[OptionalPart] = &[
    OptionalPart {
        feature: "vector search",
        extension: "vector",
        object: "chunk_embeddings",
        migration: "20261125000006_embeddings.up.sql",
    },
    OptionalPart {
        feature: "BM25 ranking",
        extension: "pg_search",
        object: "chunks_bm25_idx",
        migration: "20261125000007_bm25.up.sql",
    },
];

#[derive(Debug, Serialize)]
pub struct Capability {
    pub feature: &'static str,
    pub extension: &'static str,
    /// `enabled`, `not-offered` (the server lacks the extension), `not-enabled` (offered,
    /// but the migration's role could not create it), or `pending` (not migrated yet).
    pub state: &'static str,
    pub detail: String,
}

/// What the migrated schema offers, given the server's extensions.
async fn capabilities(conn: &mut PgConnection) -> Result<Vec<Capability>> {
    let applied = applied(conn).await?;
    let mut out = Vec::new();
    for part in OPTIONAL_PARTS {
        let version = part.migration.split('_').next().unwrap_or_default();
        if !applied.iter().any(|a| a.success && a.version.to_string() == version) {
            let detail = format!("{} is not applied yet", part.migration);
            out.push(Capability { feature: part.feature, extension: part.extension, state: "pending", detail });
            continue;
        }
        let (offered, present): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1), to_regclass($2) IS NOT NULL",
        )
        .bind(part.extension)
        .bind(part.object)
        .fetch_one(&mut *conn)
        .await?;
        let (state, detail) = match (present, offered) {
            (true, _) => ("enabled", format!("{} present", part.object)),
            (false, false) => ("not-offered", format!("the server has no `{}` extension", part.extension)),
            (false, true) => (
                "not-enabled",
                format!(
                    "`{}` is offered but was not created: as an administrator run CREATE EXTENSION {}; then psql -f migrations/{}",
                    part.extension, part.extension, part.migration
                ),
            ),
        };
        out.push(Capability { feature: part.feature, extension: part.extension, state, detail });
    }
    Ok(out)
}

fn print_capabilities(caps: &[Capability]) {
    for c in caps {
        eprintln!("{}: {} ({})", c.feature, c.state, c.detail);
    }
}

/// `YYYYMMDDHHMMSS` in UTC for a Unix time.
pub fn stamp(unix_secs: u64) -> i64 {
    crate::utc::civil(unix_secs).iter().fold(0, |acc, part| acc * 100 + part)
}

fn now_stamp() -> i64 {
    stamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// Writes `<version>_<name>.up.sql` and `.down.sql`. The version is the current UTC time,
/// or one past the newest existing migration if the clock is behind it (sqlx applies in
/// version order, so a new migration must sort last).
pub fn create(source: &Path, name: &str, now: i64) -> Result<(PathBuf, PathBuf)> {
    let slug: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if slug.is_empty() {
        bail!("`{name}` gives an empty migration name: use letters and digits, e.g. `add_document_tags`");
    }
    fs::create_dir_all(source).with_context(|| format!("creating {}", source.display()))?;
    let newest = fs::read_dir(source)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.split('_').next()?.parse::<i64>().ok())
        .max()
        .unwrap_or(0);
    let version = now.max(newest + 1);
    let up = source.join(format!("{version}_{slug}.up.sql"));
    let down = source.join(format!("{version}_{slug}.down.sql"));
    fs::write(&up, format!("-- {slug}: what this migration changes, and why.\n"))?;
    fs::write(&down, format!("-- Reverts {version}_{slug}.up.sql.\n"))?;
    println!("{}", up.display());
    println!("{}", down.display());
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamp(0), 19700101000000);
        assert_eq!(stamp(951_782_400), 20000229000000); // a leap day
        assert_eq!(stamp(1_795_651_199), 20261125235959);
    }

    #[test]
    fn down_reverts_one_step_by_default() {
        let applied = [1, 2, 3];
        assert_eq!(down_target(&applied, None, None), 2);
        assert_eq!(down_target(&applied, Some(2), None), 1);
        assert_eq!(down_target(&applied, Some(3), None), 0);
        assert_eq!(down_target(&applied, Some(9), None), 0);
        assert_eq!(down_target(&applied, None, Some(0)), 0);
        assert_eq!(down_target(&[], None, None), 0);
    }

    #[test]
    fn create_names_and_orders_the_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (up, down) = create(dir.path(), "Add Document-Tags!", 20261125120000).unwrap();
        assert_eq!(up.file_name().unwrap(), "20261125120000_add_document_tags.up.sql");
        assert_eq!(down.file_name().unwrap(), "20261125120000_add_document_tags.down.sql");
        // A clock behind the newest migration still sorts the new one last.
        let (up, _) = create(dir.path(), "next", 20200101000000).unwrap();
        assert_eq!(up.file_name().unwrap(), "20261125120001_next.up.sql");
        assert!(create(dir.path(), " -- ", 1).is_err());
    }

    #[tokio::test]
    async fn the_repository_migrations_are_all_reversible_and_well_named() {
        let migrator = load(&paths::migrations()).await.unwrap();
        let ups: Vec<i64> = ups(&migrator).map(|m| m.version).collect();
        let downs: Vec<i64> =
            migrator.iter().filter(|m| m.migration_type.is_down_migration()).map(|m| m.version).collect();
        assert!(!ups.is_empty());
        assert_eq!(ups, downs, "every .up.sql needs a .down.sql");
        for v in ups {
            assert_eq!(v.to_string().len(), 14, "{v}: versions are YYYYMMDDHHMMSS");
        }
    }

    #[tokio::test]
    async fn refusals_name_the_migration_and_the_fix() {
        let migrator = load(&paths::migrations()).await.unwrap();
        let first = ups(&migrator).next().unwrap();
        let ok = Applied {
            version: first.version,
            description: first.description.to_string(),
            installed_on: String::new(),
            success: true,
            checksum: first.checksum.to_vec(),
        };
        assert_eq!(refusal(&migrator, std::slice::from_ref(&ok)), None);
        let dirty = Applied { success: false, ..ok.clone() };
        assert!(refusal(&migrator, &[dirty]).unwrap().contains("is dirty"));
        let changed = Applied { checksum: vec![0; 48], ..ok.clone() };
        assert!(refusal(&migrator, &[changed]).unwrap().contains("git checkout -- migrations/"));
        let unknown = Applied { version: 29990101000000, ..ok.clone() };
        assert!(refusal(&migrator, &[ok, unknown]).unwrap().contains("does not know"));
    }
}
