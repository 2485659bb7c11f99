//! Where uploaded files live: a local folder (a volume in the stack) or a MinIO/S3 bucket,
//! both through OpenDAL. The bucket is checked at start, so a wrong endpoint, bucket or key
//! stops the app with the settings to fix instead of failing the first upload.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use opendal::Operator;

use crate::config::Storage;

/// How long the start-up check may wait for the bucket to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The region MinIO answers to unless told otherwise (AWS needs the bucket's own).
const DEFAULT_REGION: &str = "us-east-1";

/// The endpoint as a URL: `MINIO_ENDPOINT` may be `host:port` (the original's form, with
/// `MINIO_USE_SSL` choosing the scheme) or a full URL.
pub fn endpoint_url(endpoint: &str, use_ssl: bool) -> String {
    if endpoint.contains("://") {
        endpoint.trim_end_matches('/').to_string()
    } else {
        format!("{}://{}", if use_ssl { "https" } else { "http" }, endpoint.trim_end_matches('/'))
    }
}

/// Opens the configured storage and checks that it answers.
pub async fn open(config: &Storage) -> Result<Operator> {
    if config.kind == "local" {
        std::fs::create_dir_all(&config.local_path)
            .with_context(|| format!("creating the storage folder {}", config.local_path))?;
        return Operator::new(opendal::services::Fs::default().root(&config.local_path))
            .context("opening the storage folder");
    }
    // OpenDAL's HTTP transport (reqwest), whose TLS (https endpoints) needs a process-wide
    // crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal_http_transport_reqwest::install_default();
    let m = &config.minio;
    let endpoint = endpoint_url(&m.endpoint, m.use_ssl);
    let region = if m.region.is_empty() { DEFAULT_REGION } else { &m.region };
    let builder = opendal::services::S3::default()
        .endpoint(&endpoint)
        .bucket(&m.bucket_name)
        .region(region)
        .access_key_id(&m.access_key_id)
        .secret_access_key(&m.secret_access_key.0)
        .disable_config_load()
        .disable_ec2_metadata();
    let op = Operator::new(builder).context("configuring the MinIO/S3 storage")?;
    let checked = tokio::time::timeout(CHECK_TIMEOUT, op.check()).await;
    let problem = match checked {
        Ok(Ok(())) => return Ok(op),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
    };
    Err(anyhow!(
        "STORAGE_TYPE={}: bucket `{}` at {endpoint} cannot be used: {problem}. Check MINIO_ENDPOINT, \
         MINIO_USE_SSL, MINIO_BUCKET_NAME (the bucket must exist), MINIO_ACCESS_KEY_ID and \
         MINIO_SECRET_ACCESS_KEY",
        config.kind,
        m.bucket_name
    ))
}

/// Whether the storage works now: a small file is written, read back and deleted, within
/// `timeout`; what failed, and at which step, otherwise.
pub async fn probe(op: &Operator, timeout: Duration) -> Result<(), String> {
    let key = format!("weknora-storage-check-{}", uuid::Uuid::new_v4().simple());
    let bytes = format!("weknora storage check {key}").into_bytes();
    let steps = async {
        op.write(&key, bytes.clone()).await.map_err(|e| format!("writing a test file failed: {e}"))?;
        let read = op.read(&key).await.map_err(|e| format!("reading the test file back failed: {e}"));
        let deleted = op.delete(&key).await.map_err(|e| format!("deleting the test file failed: {e}"));
        if read?.to_vec() != bytes {
            return Err("the test file read back differs from what was written".to_string());
        }
        deleted
    };
    match tokio::time::timeout(timeout, steps).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// The folder every stored file goes under in an export (the backup archive's layout).
pub const EXPORT_PREFIX: &str = "files/";

/// Every stored file, as keys.
async fn keys(op: &Operator) -> Result<Vec<String>> {
    let entries = op.list_with("").recursive(true).await.context("listing the stored files")?;
    Ok(entries.into_iter().filter(|e| e.metadata().mode().is_file()).map(|e| e.path().to_string()).collect())
}

/// Writes every stored file to `out` as a tar (`files/<key>`), one at a time; returns how
/// many. `cargo xtask backup` reads a bucket this way.
pub async fn export(op: &Operator, out: impl std::io::Write) -> Result<usize> {
    let mut tar = tar::Builder::new(out);
    let keys = keys(op).await?;
    for key in &keys {
        let bytes = op.read(key).await.with_context(|| format!("reading {key}"))?.to_vec();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, format!("{EXPORT_PREFIX}{key}"), bytes.as_slice())
            .with_context(|| format!("writing {key} to the export"))?;
    }
    tar.into_inner()?.flush()?;
    Ok(keys.len())
}

/// Makes the storage hold exactly the files of a tar `export` wrote: each is written, then
/// every other stored file is deleted. Returns (written, deleted). `cargo xtask restore`
/// fills a bucket this way.
pub async fn import(op: &Operator, input: impl std::io::Read) -> Result<(usize, usize)> {
    let mut tar = tar::Archive::new(input);
    let mut written = std::collections::BTreeSet::new();
    for entry in tar.entries().context("reading the tar on stdin")? {
        let mut entry = entry.context("reading the tar on stdin")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(key) = name.strip_prefix(EXPORT_PREFIX).filter(|k| !k.is_empty()) else { continue };
        let mut bytes = Vec::with_capacity(entry.header().size().unwrap_or(0) as usize);
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        op.write(key, bytes).await.with_context(|| format!("writing {key}"))?;
        written.insert(key.to_string());
    }
    let mut deleted = 0;
    for key in keys(op).await? {
        if !written.contains(&key) {
            op.delete(&key).await.with_context(|| format!("deleting {key}"))?;
            deleted += 1;
        }
    }
    Ok((written.len(), deleted))
}

/// Why a file could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The storage has no space left (or the quota is used up): the operator must free or
    /// add space.
    Full,
    /// Any other failure: the storage does not answer, refuses, or failed mid-write.
    Unavailable,
}

impl StoreError {
    /// What a failed write means, read from the I/O error under OpenDAL's.
    pub fn of(e: &opendal::Error) -> StoreError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            {
                return StoreError::Full;
            }
            source = s.source();
        }
        StoreError::Unavailable
    }
}

/// Writes `bytes` under `key`; a failed write leaves nothing half-written behind.
pub async fn put(op: &Operator, key: &str, bytes: impl Into<opendal::Buffer>) -> Result<(), StoreError> {
    let Err(e) = op.write(key, bytes).await else { return Ok(()) };
    tracing::error!(error = %e, key, "storage write failed");
    if let Err(e) = op.delete(key).await {
        tracing::warn!(error = %e, key, "removing a partly written file failed");
    }
    Err(StoreError::of(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_takes_its_scheme_from_use_ssl_unless_it_has_one() {
        assert_eq!(endpoint_url("minio:9000", false), "http://minio:9000");
        assert_eq!(endpoint_url("minio:9000", true), "https://minio:9000");
        assert_eq!(endpoint_url("https://s3.eu-west-1.amazonaws.com/", false), "https://s3.eu-west-1.amazonaws.com");
    }

    #[test]
    fn a_write_that_ran_out_of_space_is_full_any_other_unavailable() {
        let failed =
            |kind| opendal::Error::new(opendal::ErrorKind::Unexpected, "write").set_source(std::io::Error::from(kind));
        assert_eq!(StoreError::of(&failed(std::io::ErrorKind::StorageFull)), StoreError::Full);
        assert_eq!(StoreError::of(&failed(std::io::ErrorKind::QuotaExceeded)), StoreError::Full);
        assert_eq!(StoreError::of(&failed(std::io::ErrorKind::ConnectionRefused)), StoreError::Unavailable);
    }
}
