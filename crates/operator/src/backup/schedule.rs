//! `weknora backup schedule`: the stack's backup service (the compose profile `backup`, which
//! BACKUP_AT in .env switches on). It runs in a container of the stack's own postgres image
//! (pg_dump and pg_basebackup of the server's version, in ParadeDB's image and the local one
//! alike), in postgres's network namespace, with the operator's static binary mounted in and
//! no access to Docker. Every day at BACKUP_AT (UTC) it
//! 1. takes a backup archive of the database and the uploaded files into BACKUP_DIR;
//! 2. verifies it: every checksum, and a restore drill into a scratch database of the stack's
//!    server (dropped after); only then is it encrypted (BACKUP_ENCRYPT_TO);
//! 3. records it in the database, where the app's /metrics, the alerts and `check --deep` see
//!    it, and adds a base backup for point-in-time recovery;
//! 4. deletes what the retention policy does not keep (BACKUP_KEEP_DAILY, BACKUP_KEEP_WEEKLY);
//! 5. copies the archive to BACKUP_COPY_TO (a folder on another disk or a network mount),
//!    checks the copy, and applies the policy there too.
//!
//! A run that fails is retried an hour later (an archive that failed its drill is kept under
//! the label `failed-drill`); a service that starts with no archive of the last day takes one
//! at once. What the service writes gets the owner of its folder, so the
//! operator's own commands on the host read and prune it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::archive::{Archive, check, recipients, seal};
use super::drill::drill_beside;
use super::retention::{self, Policy};
use super::take::{Files, Source, record_and_base, write_backup};
use crate::compose::Stack;
use crate::digest::sha256_file;
use crate::dotenv::Vars;
use crate::pg::Pg;
use crate::{docker, paths};

/// Where the compose file mounts BACKUP_DIR, BACKUP_COPY_TO (BACKUP_DIR again when unset)
/// and the app's files, in the backup service.
const BACKUPS: &str = "/backups";
const COPIES: &str = "/backup-copy";
const FILES_HERE: &str = "/var/lib/weknora/data/files";
/// The app image's binary, configuration and CA certificates, which `start` copies into the
/// folder the compose file mounts on APP_HERE (with a MinIO/S3 bucket; else it is empty).
const APP_BINARY_IN_IMAGE: &str = "/usr/local/bin/weknora-app";
const APP_CONFIG_IN_IMAGE: &str = "/etc/weknora/config.yaml";
const CA_IN_IMAGE: &str = "/etc/ssl/certs/ca-certificates.crt";
const APP_HERE: &str = "/opt/weknora-app";
/// `.env`, which `start` mounts here when archives are encrypted (else /dev/null): an
/// encrypted archive holds it, as `backup --encrypt` does.
const ENV_HERE: &str = "/run/weknora.env";
const DAY: u64 = 86_400;

/// The service's settings, from its environment (the compose file passes .env's).
struct Config {
    /// Hour and minute, UTC.
    at: (u64, u64),
    policy: Policy,
    recipients: Vec<age::x25519::Recipient>,
    project: String,
    /// BACKUP_COPY_TO as the host names it (messages only).
    copy_to: Option<String>,
}

impl Config {
    fn from_env() -> Result<Config> {
        let vars = Vars::load();
        let get = |k: &str| vars.get(k).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let at = parse_at(&get("BACKUP_AT").unwrap_or_else(|| "02:00".into()))?;
        let recipients = encrypt_to(&vars)?;
        let project = get("WEKNORA_PROJECT").context("WEKNORA_PROJECT is not set: the compose file sets it")?;
        Ok(Config {
            at,
            policy: retention::policy(&vars, None, None)?,
            recipients,
            project,
            copy_to: get("BACKUP_COPY_TO"),
        })
    }
}

/// Checks the backup service's settings for `start`, before anything is built or started:
/// a mistake fails there with its fix, not in a container that restarts over and over. A
/// BACKUP_COPY_TO that is not a folder is most often a target that is not mounted.
pub fn check_settings(vars: &Vars) -> Result<()> {
    parse_at(vars.get("BACKUP_AT").unwrap_or("02:00").trim())?;
    encrypt_to(vars)?;
    retention::policy(vars, None, None)?;
    if let Some(copy) = vars.get("BACKUP_COPY_TO").map(str::trim).filter(|c| !c.is_empty())
        && !Path::new(copy).is_dir()
    {
        bail!(
            "BACKUP_COPY_TO={copy} is not a folder: mount the off-host target there (or create the folder), or \
             remove BACKUP_COPY_TO from .env"
        );
    }
    Ok(())
}

/// What `start` does right before compose starts the backup service: makes BACKUP_DIR (the
/// host user's, not root's as a mount would make it), gives compose the folder to mount for
/// copies (BACKUP_COPY_TO, else BACKUP_DIR again: no copy; compose v1 cannot nest defaults),
/// the binary to mount and its SHA-256 (a new binary changes the service's settings, so
/// compose recreates it: a running container keeps the file it was started with), `.env`
/// when archives are encrypted (with its SHA-256, for the same reason), and, with
/// a MinIO/S3 bucket, the app's own binary, configuration and CA certificates, copied out of
/// the app image the stack runs: the service exports the bucket's objects with them.
pub async fn prepare(docker: &Docker, stack: &Stack, vars: &Vars) -> Result<Vec<(String, String)>> {
    let dir = super::take::backup_dir(None);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the backup folder {} (BACKUP_DIR)", dir.display()))?;
    let copies = match vars.get("BACKUP_COPY_TO").map(str::trim).filter(|c| !c.is_empty()) {
        Some(copy) => PathBuf::from(copy),
        None => dir.canonicalize()?,
    };
    let binary = crate::host::host().images.operator_binary()?;
    let app_dir = paths::backup_service_app();
    std::fs::create_dir_all(&app_dir).with_context(|| format!("creating {}", app_dir.display()))?;
    if vars.get("STORAGE_TYPE").is_some_and(|s| s != "local") && !stack.dev() {
        let image = format!("{}:{}", crate::images::repository(vars, "app"), stack.version());
        eprintln!("==> copying the app's binary out of {image} for the backup service (it exports the bucket)");
        let files = [APP_BINARY_IN_IMAGE, APP_CONFIG_IN_IMAGE, CA_IN_IMAGE];
        docker::copy_out_of_image(docker, &image, &["--version"], &files, &app_dir).await?;
    }
    // The settings hold every secret: the service sees them only to put them where no one
    // else can read them, in archives encrypted to BACKUP_ENCRYPT_TO.
    let env_file = match encrypt_to(vars)?.is_empty() {
        true => PathBuf::from("/dev/null"),
        false => paths::env_file().canonicalize().context("the settings file (.env)")?,
    };
    Ok(vec![
        ("BACKUP_ENV_FILE".into(), env_file.to_string_lossy().into_owned()),
        ("BACKUP_ENV_SHA256".into(), sha256_file(&env_file)?),
        ("BACKUP_COPY_MOUNT".into(), copies.to_string_lossy().into_owned()),
        ("WEKNORA_BINARY".into(), binary.to_string_lossy().into_owned()),
        ("WEKNORA_BINARY_SHA256".into(), sha256_file(&binary)?),
        ("BACKUP_APP_DIR".into(), app_dir.to_string_lossy().into_owned()),
    ])
}

/// BACKUP_ENCRYPT_TO: age public keys, separated by commas or spaces.
fn encrypt_to(vars: &Vars) -> Result<Vec<age::x25519::Recipient>> {
    let keys = vars.get("BACKUP_ENCRYPT_TO").unwrap_or_default().split([',', ' ']).filter(|k| !k.is_empty());
    recipients(&keys.map(String::from).collect::<Vec<_>>()).context("BACKUP_ENCRYPT_TO in .env")
}

/// BACKUP_AT: `HH:MM`, UTC.
fn parse_at(text: &str) -> Result<(u64, u64)> {
    let parsed = text.split_once(':').and_then(|(h, m)| Some((h.parse::<u64>().ok()?, m.parse::<u64>().ok()?)));
    match parsed {
        Some((h, m)) if h < 24 && m < 60 && text.len() == 5 => Ok((h, m)),
        _ => bail!("BACKUP_AT={text} is not a time of day: set it in .env as HH:MM in UTC, e.g. BACKUP_AT=02:00"),
    }
}

/// The first time at `at` (UTC) after `now`.
fn next_run(now: u64, (h, m): (u64, u64)) -> u64 {
    let today = now - now % DAY + h * 3600 + m * 60;
    if today > now { today } else { today + DAY }
}

/// `backup schedule`: the service's loop; with `once`, one run now.
pub async fn run(once: bool) -> Result<ExitCode> {
    let cfg = Config::from_env()?;
    let copies = match same_folder(Path::new(BACKUPS), Path::new(COPIES))? {
        true => "no off-host copy (BACKUP_COPY_TO is not set)".to_string(),
        false => format!("copies in {}", cfg.copy_to.as_deref().unwrap_or(COPIES)),
    };
    eprintln!(
        "backup service of project {}: daily at {:02}:{:02} UTC; keeping the newest of {} days and {} weeks; {copies}{}",
        cfg.project,
        cfg.at.0,
        cfg.at.1,
        cfg.policy.daily,
        cfg.policy.weekly,
        if cfg.recipients.is_empty() { "" } else { "; archives encrypted" },
    );
    if once {
        return Ok(match cycle(&cfg).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                crate::host::report_error(&e);
                ExitCode::FAILURE
            }
        });
    }
    let newest = retention::archives(Path::new(BACKUPS), &cfg.project)?.into_iter().map(|(_, t)| t).max();
    let now = crate::utc::now();
    let mut due = match newest {
        Some(t) if now.saturating_sub(t) < DAY => next_run(now, cfg.at),
        _ => {
            eprintln!("no backup archive of the last day: taking one now");
            now
        }
    };
    let mut unreachable = 0;
    loop {
        eprintln!("next backup at {}", crate::utc::rfc3339(due));
        // In steps, so a clock that jumps (a suspended host) is noticed.
        while crate::utc::now() < due {
            tokio::time::sleep(Duration::from_secs((due - crate::utc::now()).clamp(1, 60))).await;
            unreachable = if postgres_reachable() { 0 } else { unreachable + 1 };
            if unreachable == 3 {
                // A postgres that restarted has a new network namespace; this container is
                // left in the old one until Docker starts it again.
                bail!(
                    "postgres has not answered on 127.0.0.1 for 3 minutes (it restarted, or is down): exiting, so \
                     that Docker starts this service again in postgres's network"
                );
            }
        }
        due = match cycle(&cfg).await {
            Ok(()) => next_run(crate::utc::now(), cfg.at),
            Err(e) => {
                eprintln!("error: the backup failed, trying again in an hour: {e:#}");
                (crate::utc::now() + 3600).min(next_run(crate::utc::now(), cfg.at))
            }
        };
    }
}

/// Whether the server accepts connections where this service reaches it.
fn postgres_reachable() -> bool {
    let port = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5432);
    std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5)).is_ok()
}

/// One run: take, verify, encrypt, record, base backup, prune, copy.
async fn cycle(cfg: &Config) -> Result<()> {
    let dir = Path::new(BACKUPS);
    let storage = std::env::var("STORAGE_TYPE").unwrap_or_else(|_| "local".into());
    let files = match storage.as_str() {
        "local" => Files::Folder(PathBuf::from(FILES_HERE)),
        _ if Path::new(APP_HERE).join("weknora-app").exists() => Files::Export(Path::new(APP_HERE).join("weknora-app")),
        _ => Files::Left(
            "the backup service has no app binary to export the MinIO/S3 bucket's objects with (the development \
             stack has none): back them up with `backup` on the host, or with the bucket's own replication",
        ),
    };
    let source = Source {
        pg: Pg::Beside,
        project: cfg.project.clone(),
        app_version: std::env::var("WEKNORA_VERSION").unwrap_or_default(),
        postgres_image: std::env::var("POSTGRES_IMAGE").unwrap_or_default(),
        storage,
        files,
        env: None,
    };
    let (plain, manifest) = write_backup(&source, dir, None, &[]).await?;

    eprintln!("==> checking every entry of {}", plain.display());
    let checked = check(&Archive::plain(&plain))?;
    let mut problems = checked.problems;
    if problems.is_empty() {
        let work = tempfile::Builder::new().prefix(".weknora-drill-").tempdir_in(dir)?;
        match drill_beside(&Archive::plain(&plain), &manifest, work.path()).await {
            Ok(drill) => problems.extend(drill.problems),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let path = match cfg.recipients.is_empty() {
        true => plain,
        false => seal(&plain, &cfg.recipients, std::fs::read(ENV_HERE).ok().filter(|e| !e.is_empty()).as_deref())?,
    };
    give_to_folder_owner(&path)?;
    if !problems.is_empty() {
        let kept = set_aside(&path)?;
        bail!(
            "{} did not pass its restore drill, so it does not count as a good backup and nothing was pruned \
             (kept, with that label, for a look: retention leaves it alone):\n  {}",
            kept.display(),
            problems.join("\n  ")
        );
    }
    let base = record_and_base(Pg::Beside, &path, true).await?;

    retention::prune(Some(Pg::Beside), &cfg.project, dir, cfg.policy, false, true, false).await?;
    let copied = copy_off(&path, Path::new(COPIES))?;
    if copied.is_some() {
        retention::prune(None, &cfg.project, Path::new(COPIES), cfg.policy, false, true, false).await?;
    }
    eprintln!(
        "backup {} taken and verified (documents: {}){}{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        manifest.rows.get("knowledge").copied().unwrap_or(0),
        base.map(|b| format!("; base backup {b}")).unwrap_or_default(),
        copied.map(|_| format!("; copied to {}", cfg.copy_to.as_deref().unwrap_or(COPIES))).unwrap_or_default(),
    );
    Ok(())
}

/// Renames an archive that failed its drill to `…-failed-drill.tar[.age]`: a label, so it
/// is never the one retention keeps for its day (in place of a good one) and never counts as
/// the last backup.
fn set_aside(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().context("an archive's name")?.to_string_lossy().into_owned();
    let (stem, ext) = name.split_once(".tar").context("an archive's name ends in .tar")?;
    let aside = path.with_file_name(format!("{stem}-failed-drill.tar{ext}"));
    std::fs::rename(path, &aside).with_context(|| format!("renaming {name}"))?;
    Ok(aside)
}

/// Whether two paths are the same folder (the compose file mounts BACKUP_DIR on both when
/// BACKUP_COPY_TO is unset).
fn same_folder(a: &Path, b: &Path) -> Result<bool> {
    let (a, b) = (std::fs::metadata(a), std::fs::metadata(b));
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(a.dev() == b.dev() && a.ino() == b.ino()),
        (Err(e), _) | (_, Err(e)) => Err(e).context("the backup folders (BACKUP_DIR, BACKUP_COPY_TO) are not mounted"),
    }
}

/// Copies the archive into `copies` (unless that is the backup folder itself) under a
/// temporary name, checks the copy's SHA-256, then gives it its name; the copy.
fn copy_off(path: &Path, copies: &Path) -> Result<Option<PathBuf>> {
    let Some(dir) = path.parent() else { return Ok(None) };
    if same_folder(dir, copies)? {
        return Ok(None);
    }
    let name = path.file_name().context("an archive's name")?.to_string_lossy().into_owned();
    let (to, partial) = (copies.join(&name), copies.join(format!("{name}.partial")));
    eprintln!("==> copying {name} to BACKUP_COPY_TO");
    let copied = (|| -> Result<()> {
        std::fs::copy(path, &partial)?;
        std::fs::File::open(&partial)?.sync_all()?;
        if sha256_file(path)? != sha256_file(&partial)? {
            bail!("the copy differs from the archive: the target's disk or mount is faulty");
        }
        std::fs::rename(&partial, &to)?;
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("copying {name} to BACKUP_COPY_TO")));
    }
    give_to_folder_owner(&to)?;
    Ok(Some(to))
}

/// Gives a file the owner and group of its folder (the service writes as root).
fn give_to_folder_owner(path: &Path) -> Result<()> {
    let folder = std::fs::metadata(path.parent().context("a file's folder")?)?;
    std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()))
        .with_context(|| format!("giving {} to the owner of its folder", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_next_time_of_day_in_utc() {
        let nov_30 = crate::utc::parse("2026-11-30 00:00").unwrap();
        let at = parse_at("02:00").unwrap();
        assert_eq!(next_run(nov_30, at), nov_30 + 2 * 3600);
        assert_eq!(next_run(nov_30 + 2 * 3600, at), nov_30 + DAY + 2 * 3600, "not twice at the same minute");
        assert_eq!(next_run(nov_30 + 23 * 3600, parse_at("23:59").unwrap()), nov_30 + 23 * 3600 + 59 * 60);
        for bad in ["2:00", "24:00", "02:60", "0200", "02:00:00", "noon"] {
            let err = parse_at(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("BACKUP_AT={bad}")) && err.contains("HH:MM"), "{err}");
        }
    }

    #[test]
    fn an_archive_that_failed_its_drill_gets_a_label_retention_leaves_alone() {
        let dir = tempfile::tempdir().unwrap();
        for (name, aside) in [
            ("weknora-p-20261130T020000Z.tar.age", "weknora-p-20261130T020000Z-failed-drill.tar.age"),
            ("weknora-p-20261130T020000Z-2.tar", "weknora-p-20261130T020000Z-2-failed-drill.tar"),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
            assert_eq!(set_aside(&dir.path().join(name)).unwrap(), dir.path().join(aside));
        }
        assert!(retention::archives(dir.path(), "p").unwrap().is_empty(), "labelled: not candidates");
    }

    #[test]
    fn a_copy_lands_under_its_name_with_the_archives_bytes_and_never_onto_itself() {
        let (backups, copies) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let archive = backups.path().join("weknora-p-20261130T020000Z.tar");
        std::fs::write(&archive, b"archive bytes").unwrap();
        let copy = copy_off(&archive, copies.path()).unwrap().unwrap();
        assert_eq!(copy, copies.path().join("weknora-p-20261130T020000Z.tar"));
        assert_eq!(std::fs::read(&copy).unwrap(), b"archive bytes");
        assert_eq!(std::fs::read_dir(copies.path()).unwrap().count(), 1, "no partial file left");
        assert_eq!(copy_off(&archive, backups.path()).unwrap(), None);
        let gone = copy_off(&archive, &copies.path().join("missing")).unwrap_err();
        assert!(format!("{gone:#}").contains("BACKUP_COPY_TO"), "{gone:#}");
    }
}
