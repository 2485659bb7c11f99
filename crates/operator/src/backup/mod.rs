//! Backups of the running stack and their way back: `backup`, `backup verify`, `restore`.
//! The archive's layout and checks are in `archive`; this module talks to the stack.
//!
//! `backup` runs pg_dump inside the postgres container (so it matches the server) and copies
//! the uploads out of the app's volume; the stack's backup service (`schedule`) does the same
//! from beside postgres, through `Pg`. `backup verify` checks every checksum, then restores
//! the dump into a throwaway PostgreSQL container (a restore drill) and checks that every
//! document's original is in the archive with the SHA-256 the database recorded. `restore`
//! verifies first, takes a backup of the current state, restores the database into a new
//! database and swaps it in only when that worked, replaces the files, clears the cache and
//! migrates to this checkout's schema.

mod archive;
mod drill;
pub(crate) mod pitr;
mod retention;
pub(crate) mod schedule;
pub(crate) mod take;

pub use archive::{Archive, Key, Manifest, check};
use archive::{ENV, FILES, extract_tar, recipients};
use drill::{DUMP_IN_CONTAINER, PG_RESTORE, drill, upload_dump};
use take::{backup_dir, bucket, record, record_and_base, sql_name, take};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};

use crate::compose::{self, Stack};
use crate::containers::{self, Container, DATA_IN_APP, Parts};
use crate::docker::{self, exec_sh, upload_tar};
use crate::dotenv::Vars;
use crate::paths;
use crate::pg::{Pg, census};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Backup {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Folder for the archive (default: BACKUP_DIR from .env, else ./backups).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Encrypt the archive to this age public key (age1..., repeatable): it may then leave
    /// the host, and it holds .env too. Opening it needs the identity (--identity).
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    encrypt: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum BackupCommand {
    /// Check an archive: every checksum, then a restore drill in a throwaway PostgreSQL. With
    /// --to-time instead of an archive: a drill of point-in-time recovery to that moment.
    Verify {
        #[arg(required_unless_present = "to_time", conflicts_with = "to_time")]
        archive: Option<PathBuf>,
        /// Recover the WAL archive to this moment (UTC, e.g. "2026-12-01 16:55") in a
        /// throwaway PostgreSQL and count what the database then holds.
        #[arg(long, value_name = "TIME")]
        to_time: Option<String>,
        /// PostgreSQL image for the drill (default: the one the backup was taken from).
        #[arg(long)]
        image: Option<String>,
        /// The age identity file that opens an encrypted archive.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// How long recovery may take, in seconds (--to-time).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Delete the backups the retention policy does not keep: archives in the backup folder
    /// (not those with a label), base backups and the WAL only they need.
    Prune {
        /// Keep the newest backup of each of the last N days (default: BACKUP_KEEP_DAILY, else 7).
        #[arg(long, value_name = "N")]
        keep_daily: Option<usize>,
        /// Keep the newest of each of the last M weeks (default: BACKUP_KEEP_WEEKLY, else 4).
        #[arg(long, value_name = "M")]
        keep_weekly: Option<usize>,
        /// Print what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// The stack's backup service (compose profile `backup`, on when BACKUP_AT is set): every
    /// day at BACKUP_AT (UTC) a backup, its restore drill, a base backup, pruning and the copy
    /// to BACKUP_COPY_TO. It runs in the service's container, not on the host.
    Schedule {
        /// One run now, then exit (`docker compose exec backup weknora backup schedule --once`).
        #[arg(long)]
        once: bool,
    },
}

#[derive(clap::Args)]
pub struct Restore {
    #[arg(required_unless_present = "to_time", conflicts_with = "to_time")]
    archive: Option<PathBuf>,
    /// Instead of an archive: recover the database to this moment (UTC, e.g. "2026-12-01
    /// 16:55") from the newest base backup before it and the archived WAL.
    /// The uploaded files are left as they are.
    #[arg(long, value_name = "TIME")]
    to_time: Option<String>,
    /// The age identity file that opens an encrypted archive.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Confirm: the stack's database, files and cache are replaced by the backup's.
    #[arg(long)]
    yes: bool,
    /// Print what would be replaced, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not take a backup of the current state first (--to-time: do not keep the data of
    /// before in the archive volume).
    #[arg(long)]
    no_safety_backup: bool,
    /// How long to wait for recovery and for the app to be healthy again, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long)]
    json: bool,
}

impl Backup {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(async {
            match self.command {
                Some(BackupCommand::Verify { archive: Some(archive), image, identity, json, .. }) => {
                    let key = identity.as_deref().map(Key::load).transpose()?;
                    verify(&Archive { path: archive, key: key.as_ref() }, image.as_deref(), json).await
                }
                Some(BackupCommand::Verify { to_time: Some(time), timeout, json, .. }) => {
                    verify_to_time(&time, Duration::from_secs(timeout), json).await
                }
                Some(BackupCommand::Verify { .. }) => unreachable!("clap requires an archive or --to-time"),
                Some(BackupCommand::Schedule { once }) => schedule::run(once).await,
                Some(BackupCommand::Prune { keep_daily, keep_weekly, dry_run, yes, json }) => {
                    let dir = backup_dir(self.output.as_deref());
                    retention::run(&dir, keep_daily, keep_weekly, dry_run, yes, json).await
                }
                None => backup(self.output.as_deref(), &self.encrypt, self.json).await,
            }
        })
    }
}

/// `backup`: the archive, recorded in the database, and a base backup when WAL is archived.
async fn backup(output: Option<&Path>, encrypt: &[String], json: bool) -> Result<ExitCode> {
    let docker = docker::connect_for_transfers().await?;
    let project = docker::project_name(&Vars::load()).to_ascii_lowercase();
    let recipients = recipients(encrypt)?;
    let (path, manifest) = take(&docker, &project, &backup_dir(output), None, &recipients).await?;
    let postgres = Parts::find(&docker, &project).await?.postgres.name;
    let base = record_and_base(Pg::Container(&docker, &postgres), &path, false).await?;
    report_backup(&path, &manifest, base.as_deref(), json)?;
    Ok(ExitCode::SUCCESS)
}

fn report_backup(path: &Path, manifest: &Manifest, base: Option<&str>, json: bool) -> Result<()> {
    let bytes = std::fs::metadata(path)?.len();
    let files = manifest.entries.keys().filter(|k| k.starts_with(FILES)).count();
    if json {
        let value = serde_json::json!({
            "archive": path, "bytes": bytes, "schema_version": manifest.schema_version,
            "files": files, "rows": manifest.rows, "storage": manifest.storage, "base_backup": base,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", path.display());
        let summary = format!(
            "backup of project {}: {bytes} bytes, schema {}; documents: {}, files: {files} (check it: cargo xtask backup verify {})",
            manifest.project,
            manifest.schema_version,
            manifest.rows.get("knowledge").copied().unwrap_or(0),
            path.display()
        );
        eprintln!("{}", crate::host::in_host_words(&summary));
        if let Some(base) = base {
            eprintln!("base backup {base} taken: point-in-time recovery reaches back to now");
        }
    }
    Ok(())
}

async fn verify_to_time(time: &str, timeout: Duration, json: bool) -> Result<ExitCode> {
    let target = crate::utc::parse(time).map_err(anyhow::Error::msg)?;
    let docker = docker::connect_for_transfers().await?;
    let project = docker::project_name(&Vars::load()).to_ascii_lowercase();
    let recovered = pitr::drill(&docker, &project, target, timeout).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "ok": true, "drill": recovered }))?);
    } else {
        println!(
            "ok: base backup {} and the archived WAL recover to {} (schema {}; documents: {}, knowledge bases: {})",
            recovered.base_backup.name,
            recovered.target,
            recovered.schema_version,
            recovered.rows.get("knowledge").copied().unwrap_or(0),
            recovered.rows.get("knowledge_bases").copied().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(archive: &Archive<'_>, image: Option<&str>, json: bool) -> Result<ExitCode> {
    eprintln!("==> checking every entry of {}", archive.path.display());
    let checked = check(archive)?;
    let docker = docker::connect_for_transfers().await?;
    let image = image.unwrap_or(&checked.manifest.postgres_image).to_string();
    let drill = if checked.problems.is_empty() {
        Some(drill(&docker, archive, &checked.manifest, &image).await?)
    } else {
        None
    };
    let problems: Vec<&String> = checked.problems.iter().chain(drill.iter().flat_map(|d| &d.problems)).collect();
    let ok = problems.is_empty();
    // The drill of a backup of the stack on this host counts as its verification.
    let project = docker::project_name(&Vars::load()).to_ascii_lowercase();
    if ok
        && checked.manifest.project == project
        && let Ok(parts) = Parts::find(&docker, &project).await
    {
        let name = sql_name(&archive.path.file_name().unwrap_or_default().to_string_lossy());
        let sql = format!("UPDATE backup_runs SET verified_at = now() WHERE kind = 'archive' AND name = '{name}'");
        record(Pg::Container(&docker, &parts.postgres.name), &sql).await;
    }
    if json {
        let value = serde_json::json!({
            "ok": ok, "archive": archive.path, "problems": problems, "manifest": checked.manifest, "drill": drill,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if ok {
        let d = drill.as_ref().expect("a drill ran");
        println!(
            "ok: {} entries intact; the dump restores (schema {}; documents: {}, chunks: {}); document files matching the database's SHA-256: {}",
            checked.manifest.entries.len(),
            d.schema_version,
            d.rows.get("knowledge").copied().unwrap_or(0),
            d.rows.get("chunks").copied().unwrap_or(0),
            d.files_checked
        );
    } else {
        for p in &problems {
            println!("problem: {p}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

impl Restore {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<ExitCode> {
        let path = match (&self.archive, &self.to_time) {
            (Some(archive), _) => archive.clone(),
            (None, Some(time)) => return self.to_time(time).await,
            (None, None) => unreachable!("clap requires one of them"),
        };
        let key = self.identity.as_deref().map(Key::load).transpose()?;
        let archive = Archive { path, key: key.as_ref() };
        eprintln!("==> checking every entry of {}", archive.path.display());
        let checked = check(&archive)?;
        if !checked.problems.is_empty() {
            bail!("{} is damaged, nothing was changed:\n  {}", archive.path.display(), checked.problems.join("\n  "));
        }
        let manifest = checked.manifest;
        let docker = docker::connect_for_transfers().await?;
        let stack = Stack::open(&docker, None, &[]).await?;
        let parts = Parts::find(&docker, &stack.project).await?;
        let vars = Vars::load();
        let latest = crate::migrate::latest_version(&paths::migrations()).await?;
        if manifest.schema_version > latest {
            bail!(
                "the backup has schema version {} but this checkout's migrations end at {latest}: restore it with the \
                 weknora version that made it ({}), nothing was changed",
                manifest.schema_version,
                manifest.app_version
            );
        }
        let (_, current_rows) = census(Pg::Container(&docker, &parts.postgres.name)).await?;
        let db = vars.get("DB_NAME").unwrap_or_default().to_string();
        let files = manifest.entries.keys().filter(|k| k.starts_with(FILES)).count();
        let count = |rows: &BTreeMap<String, i64>, t: &str| rows.get(t).copied().unwrap_or(0);
        let mut plan = vec![format!(
            "replace database {db} of project {} (documents now: {}) with the backup's (documents: {}, chunks: {}, schema {}, taken {})",
            stack.project,
            count(&current_rows, "knowledge"),
            count(&manifest.rows, "knowledge"),
            count(&manifest.rows, "chunks"),
            manifest.schema_version,
            manifest.created
        )];
        if manifest.files_included {
            plan.push(match vars.get("STORAGE_TYPE").unwrap_or("local") {
                "local" => format!(
                    "replace the uploaded files in {}'s volume with the backup's (files: {files})",
                    parts.app.service
                ),
                bucket => format!("make the {bucket} bucket hold exactly the backup's files (files: {files})"),
            });
        }
        if manifest.entries.contains_key(ENV) {
            plan.push(format!("write the backup's settings to {} when they differ from .env", env_beside().display()));
        }
        plan.push("clear the app's Redis cache".into());
        if manifest.schema_version < latest {
            plan.push(format!("migrate from schema {} to {latest}", manifest.schema_version));
        }
        plan.push(format!("stop {} meanwhile and start it again", parts.app.service));
        if !self.no_safety_backup {
            plan.insert(0, "back up the current state first (undo: restore that backup)".into());
        }
        if !crate::confirm::go_ahead("restore", &plan, self.dry_run, self.yes, self.json)? {
            return Ok(ExitCode::SUCCESS);
        }
        let safety = if self.no_safety_backup {
            None
        } else {
            eprintln!("==> first, a backup of the current state");
            let (path, _) = take(&docker, &stack.project, &backup_dir(None), Some("before-restore"), &[]).await?;
            eprintln!("==> current state saved in {}", path.display());
            Some(path)
        };
        let undo = match &safety {
            Some(p) => crate::host::in_host_words(&format!(
                "the state before is in {} (cargo xtask restore {} --yes)",
                p.display(),
                p.display()
            )),
            None => "no backup of the state before was taken (--no-safety-backup)".into(),
        };

        let app = std::slice::from_ref(&parts.app.service);
        let timeout = Duration::from_secs(self.timeout);
        eprintln!("==> stopping {}", parts.app.service);
        stack.run(&["stop", &parts.app.service])?;
        let replaced = replace_data(&docker, &stack, &parts, &archive, &manifest, &vars).await;
        if let Err(e) = replaced {
            eprintln!("==> starting {} again", parts.app.service);
            if stack.run(&["start", &parts.app.service]).is_ok() {
                let _ = containers::wait_healthy(&docker, &stack.project, app, timeout).await;
            }
            return Err(e.context(format!("restore failed; {undo}")));
        }
        let (schema_version, rows) =
            bring_back(&docker, &stack, &parts.app.service, manifest.schema_version, latest, &undo, timeout).await?;
        if let Some(settings) = archive.read_entry(ENV)?
            && std::fs::read(paths::env_file()).ok().as_deref() != Some(settings.as_slice())
        {
            let beside = env_beside();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&beside)?.write_all(&settings)?;
            eprintln!(
                "note: the backup's settings differ from .env; they are in {} (compare them, e.g. for MODELS_ENCRYPTION_KEY)",
                beside.display()
            );
        }
        if self.json {
            let value = serde_json::json!({
                "restored": archive.path, "schema_version": schema_version, "rows": rows, "files": files,
                "safety_backup": safety,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            println!(
                "restored {} into project {}: schema {schema_version}; documents: {}, chunks: {}, files: {files}",
                archive.path.display(),
                stack.project,
                count(&rows, "knowledge"),
                count(&rows, "chunks")
            );
            if let Some(p) = &safety {
                println!("the state before is kept in {}", p.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl Restore {
    /// `restore --to-time`: point-in-time recovery of the database (see `pitr`).
    async fn to_time(&self, time: &str) -> Result<ExitCode> {
        let target = crate::utc::parse(time).map_err(anyhow::Error::msg)?;
        let now = crate::utc::now();
        if target > now {
            bail!("{time} is in the future (it is {} now): recovery can only go back", crate::utc::rfc3339(now));
        }
        let docker = docker::connect_for_transfers().await?;
        let mut stack = Stack::open(&docker, None, &[]).await?;
        // Postgres may be gone with its volume: compose must make it from the recorded image.
        crate::images::resolve_images(&docker, &mut stack, &["postgres".to_string()]).await?;
        let all = containers::containers(&docker, &stack.project).await?;
        let Some(app) = all.iter().find(|c| c.service == "app" || c.service == "app-dev").map(|c| c.service.clone())
        else {
            bail!("project `{}` has no app container: start the stack with `cargo xtask start`", stack.project);
        };
        let bases = pitr::bases(&stack)?;
        let base = pitr::choose(&bases, target)?.clone();
        let keep = crate::utc::stamp(now);
        let archive_volume = format!("{}_postgres_archive", stack.project);
        let latest = crate::migrate::latest_version(&paths::migrations()).await?;
        let plan = vec![
            format!(
                "recover the database of project {} to {} from base backup {} (whole at {}) and the archived WAL",
                stack.project,
                crate::utc::rfc3339(target),
                base.name,
                crate::utc::rfc3339(base.finished)
            ),
            if self.no_safety_backup {
                "delete the database's data of now".to_string()
            } else {
                format!("keep the database's data of now in volume {archive_volume}, folder replaced/{keep}")
            },
            "leave the uploaded files as they are".into(),
            "clear the app's Redis cache".into(),
            format!("migrate to schema {latest} if the recovered database is older"),
            format!("stop {app} and postgres meanwhile and start them again"),
        ];
        if !crate::confirm::go_ahead("restore", &plan, self.dry_run, self.yes, self.json)? {
            return Ok(ExitCode::SUCCESS);
        }
        let timeout = Duration::from_secs(self.timeout);
        eprintln!("==> stopping {app}");
        stack.run(&["stop", &app])?;
        let keep = (!self.no_safety_backup).then_some(keep);
        let kept = match pitr::recover(&docker, &stack, &base, target, keep.as_deref(), timeout).await {
            Ok(kept) => kept,
            Err(e) => {
                eprintln!("==> starting {app} again");
                let _ = stack.run(&["start", &app]);
                return Err(e);
            }
        };
        let keep = keep.filter(|_| kept);
        let vars = Vars::load();
        let parts = Parts::find(&docker, &stack.project).await?;
        clear_cache(&docker, parts.redis.as_ref(), &vars).await?;
        let undo = match &keep {
            Some(k) => format!("the data of before is in volume {archive_volume}, folder replaced/{k}"),
            None => "no data of before was kept".into(),
        };
        let (schema, _) = census(Pg::Container(&docker, &parts.postgres.name)).await?;
        let (schema_version, rows) = bring_back(&docker, &stack, &app, schema, latest, &undo, timeout).await?;
        let replaced = keep.map(|k| format!("{archive_volume}:replaced/{k}"));
        if self.json {
            let value = serde_json::json!({
                "recovered_to": crate::utc::rfc3339(target), "base_backup": base, "schema_version": schema_version,
                "rows": rows, "replaced": replaced,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            let count = |t: &str| rows.get(t).copied().unwrap_or(0);
            println!(
                "recovered project {} to {}: schema {schema_version}; knowledge bases: {}, documents: {}, chunks: {}",
                stack.project,
                crate::utc::rfc3339(target),
                count("knowledge_bases"),
                count("knowledge"),
                count("chunks")
            );
            if let Some(r) = &replaced {
                println!("the data of before is kept in {r} (remove it once the recovered database is good)");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Where a restore puts the settings an encrypted backup holds: beside .env, never over it.
fn env_beside() -> PathBuf {
    let env = paths::env_file();
    env.with_file_name(format!("{}.from-backup", env.file_name().unwrap_or_default().to_string_lossy()))
}

/// After the data was replaced, with the app stopped: migrates to this checkout's schema
/// when the data's is older, starts the app and waits until it is healthy; returns the
/// database's schema version and rows.
async fn bring_back(
    docker: &Docker,
    stack: &Stack,
    app: &str,
    schema: i64,
    latest: i64,
    undo: &str,
    timeout: Duration,
) -> Result<(i64, BTreeMap<String, i64>)> {
    if schema < latest {
        eprintln!("==> migrating to schema {latest}");
        compose::migrate(stack).with_context(|| format!("the data was restored but migrating failed; {undo}"))?;
    }
    eprintln!("==> starting {app}");
    stack.run(&["start", app])?;
    containers::wait_healthy(docker, &stack.project, &[app.to_string()], timeout)
        .await
        .with_context(|| format!("the data was restored but the app is not healthy; {undo}"))?;
    let parts = Parts::find(docker, &stack.project).await?;
    census(Pg::Container(docker, &parts.postgres.name)).await
}

/// The destructive part of a restore, with the app stopped: the database (restored into a
/// new database, swapped in only when pg_restore succeeded), the files, the cache.
pub async fn replace_data(
    docker: &Docker,
    stack: &Stack,
    parts: &Parts,
    archive: &Archive<'_>,
    manifest: &Manifest,
    vars: &Vars,
) -> Result<()> {
    let pg = &parts.postgres.name;
    let work = tempfile::tempdir()?;
    eprintln!("==> restoring the database");
    upload_dump(docker, pg, archive, work.path()).await?;
    let restore_db = format!(
        r#"set -e
db="$POSTGRES_DB"; new="${{POSTGRES_DB}}_restoring"
export PGOPTIONS='-c client_min_messages=warning'
admin() {{ psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres "$@"; }}
admin -c "DROP DATABASE IF EXISTS \"$new\" WITH (FORCE)" -c "CREATE DATABASE \"$new\" OWNER \"$POSTGRES_USER\""
if ! {PG_RESTORE_NEW}; then
    admin -c "DROP DATABASE IF EXISTS \"$new\" WITH (FORCE)"; rm -f {DUMP_IN_CONTAINER}; exit 1
fi
rm -f {DUMP_IN_CONTAINER}
admin -c "DROP DATABASE \"$db\" WITH (FORCE)" -c "ALTER DATABASE \"$new\" RENAME TO \"$db\"""#,
        PG_RESTORE_NEW = PG_RESTORE.replace("\"$1\"", "\"$new\""),
    );
    exec_sh(docker, pg, "restoring the database (the database in use was left as it was)", &restore_db, &[]).await?;

    if manifest.files_included {
        match vars.get("STORAGE_TYPE").unwrap_or("local") {
            "local" => {
                eprintln!("==> restoring the uploaded files");
                restore_files(docker, parts, archive, work.path()).await?;
            }
            bucket_type => {
                eprintln!(
                    "==> restoring the objects of the {bucket_type} bucket (`storage import` in a one-off app container)"
                );
                let tar = work.path().join("files.tar");
                extract_tar(archive, FILES, FILES, &tar)?;
                let sink = tempfile::tempfile()?;
                bucket(stack, "import", std::fs::File::open(&tar)?.into(), sink)?;
            }
        }
    }
    clear_cache(docker, parts.redis.as_ref(), vars).await
}

/// Deletes the app's keys in Redis (cached answers of the data of before).
async fn clear_cache(docker: &Docker, redis: Option<&Container>, vars: &Vars) -> Result<()> {
    match redis {
        Some(redis) => {
            let prefix = vars.get("REDIS_PREFIX").unwrap_or("weknora:");
            let db = vars.get("REDIS_DB").unwrap_or("0");
            let clear = r#"redis-cli -n "$2" --scan --pattern "$1*" | xargs -r redis-cli -n "$2" del >/dev/null"#;
            exec_sh(docker, &redis.name, "clearing the cache", clear, &[prefix, db]).await?;
        }
        None => eprintln!("warning: redis is not running: clear the app's cache keys before trusting search results"),
    }
    Ok(())
}

/// Replaces the files in the app's volume, through a short-lived helper container on the
/// postgres image (the app's image has no shell): the backup's files go to a new folder
/// that is swapped in, owned like the volume.
async fn restore_files(docker: &Docker, parts: &Parts, archive: &Archive<'_>, work: &Path) -> Result<()> {
    let inspect = docker.inspect_container(&parts.app.name, None).await?;
    let volume = containers::volume_at(&inspect, DATA_IN_APP)
        .with_context(|| format!("{} has no volume on {DATA_IN_APP}", parts.app.name))?;
    let tar = work.join("files.tar");
    extract_tar(archive, FILES, "files.restoring/", &tar)?;
    let body = ContainerCreateBody {
        image: Some(parts.postgres.image.clone()),
        entrypoint: Some(vec!["sleep".into()]),
        cmd: Some(vec!["3600".into()]),
        user: Some("0".into()),
        host_config: Some(HostConfig { binds: Some(vec![format!("{volume}:/data")]), ..Default::default() }),
        ..Default::default()
    };
    docker::with_throwaway(docker, "weknora-restore", body, async |name| {
        exec_sh(
            docker,
            name,
            "preparing the files folder",
            "rm -rf /data/files.restoring && mkdir /data/files.restoring",
            &[],
        )
        .await?;
        upload_tar(docker, name, "/data", &tar).await?;
        let swap = r#"set -e
chown -R "$(stat -c %u:%g /data)" /data/files.restoring
rm -rf /data/files.old
if [ -e /data/files ]; then mv /data/files /data/files.old; fi
mv /data/files.restoring /data/files
rm -rf /data/files.old"#;
        exec_sh(docker, name, "swapping the files in", swap, &[]).await?;
        Ok(())
    })
    .await
}
