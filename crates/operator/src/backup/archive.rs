//! The backup archive as a file, with no Docker in sight: one tar, readable by its owner only
//! (it holds every document):
//!   database.dump  pg_dump's custom format
//!   files/<key>    the uploaded originals (STORAGE_TYPE=local)
//!   manifest.json  last: versions, schema version, row counts, each entry's size and SHA-256
//! It is written as `<name>.tar.partial` and renamed when whole, so a `.tar` is always complete.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The archive layout's version; a newer one is refused with the reason.
pub const FORMAT: u32 = 1;
pub const DUMP: &str = "database.dump";
const MANIFEST: &str = "manifest.json";
pub const FILES: &str = "files/";

/// What an archive holds; the last entry of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created: String,
    pub project: String,
    /// The running app's version (its image label).
    pub app_version: String,
    /// The image of the postgres the dump came from (the drill uses it).
    pub postgres_image: String,
    /// The newest applied migration.
    pub schema_version: i64,
    pub storage: String,
    pub files_included: bool,
    /// Rows per table, counted right after the dump (informative: writes may race it).
    pub rows: BTreeMap<String, i64>,
    pub entries: BTreeMap<String, Sum>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub bytes: u64,
    pub sha256: String,
}

/// Hashes and counts what passes through.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    fn sum(self) -> Sum {
        Sum { bytes: self.bytes, sha256: crate::hex(&self.hasher.finalize()) }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// `weknora-<project>-<UTC time>[-<label>][-<n>].tar`.
fn archive_name(project: &str, unix_secs: u64, label: Option<&str>, n: u32) -> String {
    let [y, mo, d, h, mi, s] = crate::utc::civil(unix_secs);
    let mut name = format!("weknora-{project}-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    if let Some(label) = label {
        name.push('-');
        name.push_str(label);
    }
    if n > 1 {
        name.push_str(&format!("-{n}"));
    }
    name + ".tar"
}

/// A header for a regular file of `bytes` bytes in an archive we write.
fn file_header(bytes: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header
}

/// Writes the archive: the dump, the files (from Docker's copy of the folder), the
/// manifest with every entry's checksum last.
pub fn write_archive(
    file: std::fs::File,
    now: u64,
    dump: &Path,
    files: Option<&Path>,
    mut manifest: Manifest,
) -> Result<Manifest> {
    let mut out = tar::Builder::new(std::io::BufWriter::new(file));
    let mut reader = Hashing::new(std::fs::File::open(dump)?);
    out.append_data(&mut file_header(std::fs::metadata(dump)?.len(), now), DUMP, &mut reader)?;
    manifest.entries.insert(DUMP.to_string(), reader.sum());
    if let Some(files) = files {
        let mut files = tar::Archive::new(std::fs::File::open(files)?);
        for entry in files.entries().context("reading the files copied out of the app")? {
            let entry = entry?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            // Docker names them `files/<key>` after the folder it copied.
            let inner = entry.path()?.to_string_lossy().into_owned();
            let key = inner.split_once('/').map_or(inner.as_str(), |(_, k)| k).to_string();
            let name = format!("{FILES}{key}");
            let bytes = entry.header().size()?;
            let mut reader = Hashing::new(entry);
            out.append_data(&mut file_header(bytes, now), &name, &mut reader)?;
            manifest.entries.insert(name, reader.sum());
        }
    }
    let json = serde_json::to_vec_pretty(&manifest)?;
    out.append_data(&mut file_header(json.len() as u64, now), MANIFEST, json.as_slice())?;
    let file = out.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(manifest)
}

/// Creates `<dir>/<name>.tar.partial` (mode 600) for the first free name; returns the final
/// path (without `.partial`) and the open file.
pub fn create_archive(dir: &Path, project: &str, now: u64, label: Option<&str>) -> Result<(PathBuf, std::fs::File)> {
    for n in 1..100 {
        let path = dir.join(archive_name(project, now, label, n));
        let partial = path.with_extension("tar.partial");
        if path.exists() {
            continue;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&partial) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", partial.display())),
        }
    }
    bail!("no free archive name in {}", dir.display())
}

/// An archive read through: its manifest and what is wrong with it.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub manifest: Manifest,
    pub problems: Vec<String>,
}

/// Reads every entry of an archive, checks each against the manifest.
pub fn check(archive: &Path) -> Result<Checked> {
    let file = std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut sums = BTreeMap::new();
    let mut manifest_text = None;
    let damaged = || format!("{} is damaged or not a weknora backup (reading it failed)", archive.display());
    for entry in tar.entries().with_context(damaged)? {
        let mut entry = entry.with_context(damaged)?;
        if entry.header().entry_type().is_dir() {
            continue; // a tar made by hand lists folders too
        }
        let name = entry.path().with_context(damaged)?.to_string_lossy().into_owned();
        if name == MANIFEST {
            let mut text = String::new();
            entry.read_to_string(&mut text).with_context(damaged)?;
            manifest_text = Some(text);
        } else {
            let mut reader = Hashing::new(&mut entry);
            std::io::copy(&mut reader, &mut std::io::sink()).with_context(damaged)?;
            sums.insert(name, reader.sum());
        }
    }
    let Some(text) = manifest_text else {
        bail!("{} has no {MANIFEST}: it is not a whole weknora backup (was it cut short?)", archive.display());
    };
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{MANIFEST} in {} is not valid", archive.display()))?;
    if manifest.format > FORMAT {
        bail!(
            "{} has layout {} but this weknora reads up to {FORMAT}: use the weknora version that made it ({})",
            archive.display(),
            manifest.format,
            manifest.app_version
        );
    }
    let mut problems = Vec::new();
    for (name, want) in &manifest.entries {
        match sums.get(name) {
            None => problems.push(format!("{name} is missing")),
            Some(got) if got != want => problems.push(format!(
                "{name} is corrupt: SHA-256 {} ({} bytes), the manifest says {} ({} bytes)",
                got.sha256, got.bytes, want.sha256, want.bytes
            )),
            Some(_) => {}
        }
    }
    for name in sums.keys().filter(|n| !manifest.entries.contains_key(*n)) {
        problems.push(format!("{name} is not in the manifest"));
    }
    if !manifest.entries.contains_key(DUMP) {
        problems.push(format!("the manifest lists no {DUMP}"));
    }
    Ok(Checked { manifest, problems })
}

/// Writes a tar holding the archive's entries under `prefix` (those starting with `from`)
/// renamed to `to`, for copying into a container.
pub fn extract_tar(archive: &Path, from: &str, to: &str, out: &Path) -> Result<usize> {
    let mut tar = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(archive)?));
    let mut builder = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    let mut n = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(from) else { continue };
        let mut header = file_header(entry.header().size()?, entry.header().mtime()?);
        builder.append_data(&mut header, format!("{to}{rest}"), &mut entry)?;
        n += 1;
    }
    builder.into_inner()?.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_sort_by_time_and_never_collide() {
        assert_eq!(archive_name("weknora", 1_764_115_200, None, 1), "weknora-weknora-20251126T000000Z.tar");
        assert_eq!(
            archive_name("prod", 1_764_115_201, Some("before-restore"), 2),
            "weknora-prod-20251126T000001Z-before-restore-2.tar"
        );
    }

    /// An archive as `take` writes one, from the given entries.
    fn write_archive(dir: &Path, entries: &[(&str, &[u8])], tamper: Option<(&str, &[u8])>) -> PathBuf {
        let path = dir.join("b.tar");
        let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut sums = BTreeMap::new();
        for (name, data) in entries {
            let written: &[u8] = match tamper {
                Some((t, other)) if t == *name => other,
                _ => data,
            };
            out.append_data(&mut file_header(written.len() as u64, 0), name, written).unwrap();
            let mut h = Hashing::new(*data);
            std::io::copy(&mut h, &mut std::io::sink()).unwrap();
            sums.insert(name.to_string(), h.sum());
        }
        let manifest = Manifest {
            format: FORMAT,
            created: "2026-11-26T00:00:00Z".into(),
            project: "p".into(),
            app_version: "0.1.0".into(),
            postgres_image: "img".into(),
            schema_version: 7,
            storage: "local".into(),
            files_included: true,
            rows: BTreeMap::new(),
            entries: sums,
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        out.append_data(&mut file_header(json.len() as u64, 0), MANIFEST, json.as_slice()).unwrap();
        out.finish().unwrap();
        path
    }

    #[test]
    fn an_intact_archive_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_archive(dir.path(), &[(DUMP, b"dump"), ("files/kb/a.pdf", b"%PDF")], None);
        let checked = check(&path).unwrap();
        assert_eq!(checked.problems, Vec::<String>::new());
        assert_eq!(checked.manifest.entries.len(), 2);
    }

    #[test]
    fn a_changed_byte_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_archive(
            dir.path(),
            &[(DUMP, b"dump"), ("files/kb/a.pdf", b"%PDF")],
            Some(("files/kb/a.pdf", b"%PDX")),
        );
        let problems = check(&path).unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("files/kb/a.pdf is corrupt"), "{problems:?}");
    }

    #[test]
    fn a_cut_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_archive(dir.path(), &[(DUMP, &[7; 4096])], None);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..3000]).unwrap();
        let err = format!("{:#}", check(&path).unwrap_err());
        assert!(err.contains("damaged") || err.contains("cut short"), "{err}");
    }

    #[test]
    fn a_newer_layout_is_refused_with_the_version_to_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.tar");
        let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let json = br#"{"format":99,"created":"","project":"p","app_version":"9.0.0","postgres_image":"","schema_version":1,"storage":"local","files_included":true,"rows":{},"entries":{}}"#;
        out.append_data(&mut file_header(json.len() as u64, 0), MANIFEST, &json[..]).unwrap();
        out.finish().unwrap();
        let err = format!("{:#}", check(&path).unwrap_err());
        assert!(err.contains("9.0.0"), "{err}");
    }
}
