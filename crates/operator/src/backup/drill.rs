//! Restore drills: an archive's dump restored into a throwaway PostgreSQL container (or a
//! scratch database of the stack's own server) and checked against its manifest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use serde::Serialize;

use super::archive::{Archive, DUMP, FILES, Manifest, extract_tar};
use crate::docker::{self, exec_sh, upload_tar};
use crate::pg::{Pg, census_in, psql_in};
use crate::poll::poll;

/// Where a dump goes inside a postgres container while it is restored.
pub(super) const DUMP_IN_CONTAINER: &str = "/tmp/weknora-restore.dump";

/// Copies the archive's dump into a postgres container at DUMP_IN_CONTAINER.
pub(super) async fn upload_dump(docker: &Docker, container: &str, archive: &Archive<'_>, work: &Path) -> Result<()> {
    let tar = work.join("dump.tar");
    extract_tar(archive, DUMP, "weknora-restore.dump", &tar)?;
    upload_tar(docker, container, "/tmp", &tar).await
}

/// pg_restore of DUMP_IN_CONTAINER into `db` (as the image's user; extensions included).
pub(super) const PG_RESTORE: &str =
    r#"pg_restore --exit-on-error --no-owner --no-privileges -U "$POSTGRES_USER" -d "$1" /tmp/weknora-restore.dump"#;

/// What a restore drill found.
#[derive(Debug, Serialize)]
pub struct Drill {
    pub image: String,
    pub schema_version: i64,
    pub rows: BTreeMap<String, i64>,
    /// Documents whose original was checked against the SHA-256 the database recorded.
    pub files_checked: usize,
    pub problems: Vec<String>,
}

/// Restores the archive's dump into a throwaway container of `image` and checks it.
pub(super) async fn drill(docker: &Docker, archive: &Archive<'_>, manifest: &Manifest, image: &str) -> Result<Drill> {
    if docker.inspect_image(image).await.is_err() {
        bail!(
            "the restore drill needs the PostgreSQL image {image} and Docker does not have it: \
             pull or load it, or choose another with --image"
        );
    }
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(vec![
            "POSTGRES_USER=weknora".into(),
            // A throwaway server with no published port: the password guards nothing.
            "POSTGRES_PASSWORD=drill".into(),
            "POSTGRES_DB=drill".into(),
        ]),
        labels: Some([("io.github.weknora.drill".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    docker::with_throwaway(docker, "weknora-drill", body, async |name| {
        eprintln!("==> restore drill: restoring the dump into a throwaway PostgreSQL ({image})");
        let ready = r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Atc 'SELECT 1'"#;
        let what = format!("the drill's PostgreSQL ({image}) to accept connections");
        poll(&what, Duration::from_secs(120), Duration::from_millis(500), || async {
            Ok(exec_sh(docker, name, "waiting for PostgreSQL", ready, &[]).await.ok())
        })
        .await?;
        let work = tempfile::tempdir()?;
        upload_dump(docker, name, archive, work.path()).await?;
        exec_sh(docker, name, "pg_restore", PG_RESTORE, &["drill"]).await?;
        examine(Pg::Container(docker, name), None, manifest, image).await
    })
    .await
}

/// Checks a database restored from an archive against its manifest: the schema version, and
/// every document's original in the archive with the SHA-256 the database recorded.
async fn examine(pg: Pg<'_>, db: Option<&str>, manifest: &Manifest, image: &str) -> Result<Drill> {
    let (schema_version, rows) = census_in(pg, db).await?;
    let mut problems = Vec::new();
    if schema_version != manifest.schema_version {
        problems.push(format!(
            "the dump has schema version {schema_version}, the manifest says {}",
            manifest.schema_version
        ));
    }
    let mut files_checked = 0;
    if manifest.files_included && rows.contains_key("knowledge") {
        let sql = "SELECT object_key || ' ' || coalesce(checksum, '-') FROM knowledge WHERE object_key IS NOT NULL";
        for line in psql_in(pg, db, sql).await?.lines() {
            let (key, checksum) = line.rsplit_once(' ').unwrap_or((line, "-"));
            match manifest.entries.get(&format!("{FILES}{key}")) {
                None => problems.push(format!("document file {key} is in the database but not in the archive")),
                Some(sum) if checksum != "-" && sum.sha256 != checksum => problems.push(format!(
                    "document file {key}: SHA-256 {} in the archive, {checksum} in the database",
                    sum.sha256
                )),
                Some(_) => files_checked += 1,
            }
        }
    }
    Ok(Drill { image: image.to_string(), schema_version, rows, files_checked, problems })
}

/// The restore drill of the backup service: the dump restored into a scratch database of
/// the stack's own server (`<database>_drill`, dropped after), and checked.
pub(crate) async fn drill_beside(archive: &Archive<'_>, manifest: &Manifest, work: &Path) -> Result<Drill> {
    let dump = work.join("drill.dump");
    archive.extract_entry(DUMP, &dump)?;
    let db = format!("{}_drill", std::env::var("POSTGRES_DB").unwrap_or_default());
    let admin = r#"psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)""#;
    let restore = format!(
        r#"set -e
export PGOPTIONS='-c client_min_messages=warning'
{admin}
psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$1\""
pg_restore --exit-on-error --no-owner --no-privileges -U "$POSTGRES_USER" -d "$1" "$2""#
    );
    eprintln!("==> restore drill: restoring the dump into database {db} of the stack's server");
    let dump_arg = dump.to_string_lossy();
    let examined = match Pg::Beside.sh("restoring the dump", &restore, &[&db, &dump_arg]).await {
        Ok(_) => examine(Pg::Beside, Some(&db), manifest, &manifest.postgres_image).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&dump);
    Pg::Beside.sh("dropping the drill's database", admin, &[&db]).await?;
    examined
}
