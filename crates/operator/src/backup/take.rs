//! Taking a backup: from the running stack (`backup`, `upgrade`) or from beside postgres
//! (the backup service), into one archive, recorded in the stack's database.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::archive::{DUMP, FORMAT, Manifest, create_archive, write_archive};
use super::pitr;
use crate::compose::Stack;
use crate::containers::{FILES_IN_APP, Parts};
use crate::docker::download;
use crate::dotenv::Vars;
use crate::paths;
use crate::pg::{Pg, census, psql};

/// The folder backups go to: `--output`, else BACKUP_DIR, else ./backups.
pub fn backup_dir(output: Option<&Path>) -> PathBuf {
    match output {
        Some(dir) => dir.to_path_buf(),
        None => Vars::load().get("BACKUP_DIR").map(PathBuf::from).unwrap_or_else(paths::backups),
    }
}

/// Takes a backup of the running stack into `dir`; returns the archive and its manifest.
/// Encrypted to `recipients` (none: plain), the archive holds .env too.
pub async fn take(
    docker: &Docker,
    project: &str,
    dir: &Path,
    label: Option<&str>,
    recipients: &[age::x25519::Recipient],
) -> Result<(PathBuf, Manifest)> {
    let parts = Parts::find(docker, project).await?;
    let storage = Vars::load().get("STORAGE_TYPE").unwrap_or_default().to_string();
    let files = match storage.as_str() {
        "local" => Files::InApp(docker, &parts.app.name),
        _ => Files::Bucket(docker),
    };
    let source = Source {
        pg: Pg::Container(docker, &parts.postgres.name),
        project: project.to_string(),
        app_version: parts.app.version.clone(),
        postgres_image: parts.postgres.image.clone(),
        storage,
        files,
        // The settings hold every secret: only an archive no one else can open may carry them.
        env: if recipients.is_empty() { None } else { std::fs::read(paths::env_file()).ok() },
    };
    write_backup(&source, dir, label, recipients).await
}

/// What a backup is taken from.
pub(crate) struct Source<'a> {
    pub pg: Pg<'a>,
    pub project: String,
    pub app_version: String,
    pub postgres_image: String,
    pub storage: String,
    pub files: Files<'a>,
    /// .env, for an encrypted archive.
    pub env: Option<Vec<u8>>,
}

/// Where the uploaded files are.
pub(crate) enum Files<'a> {
    /// In the app's volume (STORAGE_TYPE=local), through this container of the app.
    InApp(&'a Docker, &'a str),
    /// In the app's volume, mounted here (the backup service).
    Folder(PathBuf),
    /// In the MinIO/S3 bucket, through a one-off container of the app.
    Bucket(&'a Docker),
    /// In the MinIO/S3 bucket, through the app's binary here (the backup service).
    Export(PathBuf),
    /// Not reachable from here: the archive has the database only, and says so.
    Left(&'static str),
}

/// Writes a backup of `source` into `dir`; the archive and its manifest.
pub(crate) async fn write_backup(
    source: &Source<'_>,
    dir: &Path,
    label: Option<&str>,
    recipients: &[age::x25519::Recipient],
) -> Result<(PathBuf, Manifest)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the backup folder {}", dir.display()))?;
    // Work files next to the archive: same disk, and /tmp may be small.
    let work = tempfile::Builder::new()
        .prefix(".weknora-backup-")
        .tempdir_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    let now = crate::utc::now();

    eprintln!("==> dumping the database (pg_dump in {})", source.pg.name());
    let dump_path = work.path().join(DUMP);
    let mut dump = std::io::BufWriter::new(std::fs::File::create(&dump_path)?);
    let script = r#"exec pg_dump --format=custom --no-owner --no-privileges -U "$POSTGRES_USER" -d "$POSTGRES_DB""#;
    let (code, stderr) = source.pg.sh_to(script, &[], &mut dump).await?;
    if code != 0 {
        bail!("pg_dump failed in {} (exit {code}): {}", source.pg.name(), stderr.trim());
    }
    dump.flush()?;
    let (schema_version, rows) = census(source.pg).await?;

    let files_tar = work.path().join("files.tar");
    let mut files_included = true;
    match &source.files {
        Files::InApp(docker, app) => {
            eprintln!("==> copying the uploaded files out of {app}");
            download(docker, app, FILES_IN_APP, &files_tar).await?;
        }
        Files::Folder(folder) => {
            eprintln!("==> copying the uploaded files out of {}", folder.display());
            tar_folder(folder, &files_tar)?;
        }
        Files::Bucket(docker) => {
            eprintln!(
                "==> copying the objects out of the {} bucket (`storage export` in a one-off app container)",
                source.storage
            );
            let stack = Stack::open(docker, None, &[]).await?;
            bucket(&stack, "export", std::process::Stdio::null(), std::fs::File::create(&files_tar)?)?;
        }
        Files::Export(app) => {
            eprintln!("==> copying the objects out of the {} bucket (`storage export`)", source.storage);
            let out = std::process::Command::new(app)
                .args(["storage", "export"])
                .stdout(std::fs::File::create(&files_tar)?)
                .stderr(std::process::Stdio::piped())
                .output()
                .with_context(|| format!("running {}", app.display()))?;
            if !out.status.success() {
                bail!("`storage export` of the bucket failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        Files::Left(why) => {
            eprintln!("warning: the archive holds the database only: {why}");
            files_included = false;
        }
    }

    let manifest = Manifest {
        format: FORMAT,
        created: crate::utc::rfc3339(now),
        project: source.project.clone(),
        app_version: source.app_version.clone(),
        postgres_image: source.postgres_image.clone(),
        schema_version,
        storage: source.storage.clone(),
        files_included,
        rows,
        entries: BTreeMap::new(),
    };
    let (path, partial, file) = create_archive(dir, &source.project, now, label, !recipients.is_empty())?;
    let files = Some(files_tar.as_path()).filter(|f| f.exists());
    let env = source.env.as_deref().filter(|_| !recipients.is_empty());
    match write_archive(file, recipients, now, &dump_path, files, env, manifest) {
        Ok(manifest) => {
            std::fs::rename(&partial, &path)
                .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
            Ok((path, manifest))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!("writing {}", partial.display())))
        }
    }
}

/// A tar of `folder` as `files/...` (what Docker gives for the app's files folder); none
/// when the folder does not exist (no upload yet).
fn tar_folder(folder: &Path, to: &Path) -> Result<()> {
    if !folder.exists() {
        return Ok(());
    }
    let mut tar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(to)?));
    tar.follow_symlinks(false);
    tar.append_dir_all("files", folder).with_context(|| format!("reading {}", folder.display()))?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Runs `weknora-app storage <action>` in a one-off container of the app (the stack's
/// settings and network): how the objects of a MinIO/S3 bucket are backed up and restored.
pub(super) fn bucket(stack: &Stack, action: &str, input: std::process::Stdio, output: std::fs::File) -> Result<()> {
    if stack.dev() {
        bail!(
            "with a MinIO/S3 bucket, backups and restores run on the production stack: the development stack \
             has no app image to reach the bucket with"
        );
    }
    stack.one_off(&format!("`storage {action}` of the bucket"), &["app", "storage", action], input, output.into())?;
    Ok(())
}

/// What follows a new archive: it is recorded in the database (verified: its drill passed),
/// and a base backup is added when the WAL is archived; the base backup's name.
pub(crate) async fn record_and_base(pg: Pg<'_>, archive: &Path, verified: bool) -> Result<Option<String>> {
    let name = sql_name(&archive.file_name().unwrap_or_default().to_string_lossy());
    let verified_at = if verified { "now()" } else { "NULL" };
    let sql = format!("INSERT INTO backup_runs (kind, name, verified_at) VALUES ('archive', '{name}', {verified_at})");
    record(pg, &sql).await;
    if !pitr::archiving(pg).await? {
        eprintln!("note: WAL archiving is off (WAL_ARCHIVING=off), so there is no point-in-time recovery");
        return Ok(None);
    }
    let base = pitr::take_base(pg, crate::utc::now()).await.with_context(|| {
        format!("the archive {} is complete, but the base backup for point-in-time recovery failed", archive.display())
    })?;
    record(pg, &format!("INSERT INTO backup_runs (kind, name) VALUES ('base', '{}')", sql_name(&base))).await;
    Ok(Some(base))
}

/// A name of ours (archive or base backup) fit for an SQL literal: anything else is dropped.
pub(super) fn sql_name(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect()
}

/// Records a backup or a drill in the stack's database (`backup_runs`), where the app reads
/// the last good backup for /metrics. Best effort: a failure only warns.
pub(super) async fn record(pg: Pg<'_>, sql: &str) {
    if let Err(e) = psql(pg, sql).await {
        eprintln!(
            "warning: the backup could not be recorded in the database (the alert on missing backups will not see it): {e:#}"
        );
    }
}
