//! The backup archive as a file, with no Docker in sight: one tar, readable by its owner only
//! (it holds every document):
//!   database.dump  pg_dump's custom format
//!   files/<key>    the uploaded originals (STORAGE_TYPE=local)
//!   manifest.json  last: versions, schema version, row counts, each entry's size and SHA-256
//!   config/.env    the stack's settings, secrets included: only in encrypted archives
//! It is written as `<name>.tar.partial` and renamed when whole, so a `.tar` is always complete.
//! Encrypted (`backup --encrypt age1...`), the same tar is an age file, `<name>.tar.age`:
//! X25519 keys, readable only with the matching identity (`--identity FILE`).

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
pub const ENV: &str = "config/.env";
/// How every age file begins.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

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
        Sum { bytes: self.bytes, sha256: crate::digest::hex(&self.hasher.finalize()) }
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
fn archive_name(project: &str, unix_secs: u64, label: Option<&str>, n: u32, encrypted: bool) -> String {
    let mut name = format!("weknora-{project}-{}", crate::utc::stamp(unix_secs));
    if let Some(label) = label {
        name.push('-');
        name.push_str(label);
    }
    if n > 1 {
        name.push_str(&format!("-{n}"));
    }
    name + if encrypted { ".tar.age" } else { ".tar" }
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

/// Where an archive is written: as it is, or through age's encryption.
enum Sink {
    Plain(std::io::BufWriter<std::fs::File>),
    Age(age::stream::StreamWriter<std::io::BufWriter<std::fs::File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    fn new(file: std::fs::File, recipients: &[age::x25519::Recipient]) -> Result<Sink> {
        let out = std::io::BufWriter::new(file);
        if recipients.is_empty() {
            return Ok(Sink::Plain(out));
        }
        let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| anyhow::anyhow!("encrypting the archive: {e}"))?;
        Ok(Sink::Age(encryptor.wrap_output(out)?))
    }

    /// Ends the stream (age's last chunk) and writes everything to disk.
    fn finish(self) -> Result<()> {
        let out = match self {
            Sink::Plain(w) => w,
            Sink::Age(w) => w.finish()?,
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
}

/// Reads the `--encrypt` recipients: age public keys (`age1...`).
pub fn recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>> {
    keys.iter()
        .map(|k| {
            k.trim().parse().map_err(|e| {
                anyhow::anyhow!(
                    "--encrypt `{k}` is not an age public key ({e}): give the line `age-keygen` prints as \
                     \"Public key: age1...\", or the identity file's `# public key:` comment"
                )
            })
        })
        .collect()
}

/// The identity that opens encrypted archives: an age identity file (`age-keygen -o FILE`).
pub struct Key {
    path: PathBuf,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Key {
    pub fn load(path: &Path) -> Result<Key> {
        let wrong = || format!("{} is not an age identity file (AGE-SECRET-KEY-1... lines)", path.display());
        let file = age::IdentityFile::from_file(path.display().to_string())
            .with_context(|| format!("reading the identity file {}", path.display()))?;
        let identities = file.into_identities().map_err(|e| anyhow::anyhow!("{e}")).with_context(wrong)?;
        if identities.is_empty() {
            bail!("{}", wrong());
        }
        Ok(Key { path: path.to_path_buf(), identities })
    }
}

/// A backup archive on disk and, for an encrypted one, the key that opens it.
pub struct Archive<'k> {
    pub path: PathBuf,
    pub key: Option<&'k Key>,
}

impl Archive<'_> {
    pub fn plain(path: &Path) -> Archive<'static> {
        Archive { path: path.to_path_buf(), key: None }
    }

    /// Whether the file is an age file (by its first bytes).
    pub fn encrypted(&self) -> Result<bool> {
        let mut head = [0u8; 22];
        let mut file = std::fs::File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let n = file.read(&mut head)?;
        Ok(&head[..n] == AGE_MAGIC)
    }

    /// The tar inside, decrypted as it is read when the archive is encrypted.
    fn reader(&self) -> Result<Box<dyn Read>> {
        let file = std::fs::File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let file = std::io::BufReader::new(file);
        if !self.encrypted()? {
            return Ok(Box::new(file));
        }
        let name = self.path.display();
        let Some(key) = self.key else {
            bail!("{name} is encrypted: give the identity that opens it with --identity FILE");
        };
        let decryptor = age::Decryptor::new_buffered(file)
            .map_err(|e| anyhow::anyhow!("{name} is damaged or not an age file: {e}"))?;
        match decryptor.decrypt(key.identities.iter().map(|i| i.as_ref() as &dyn age::Identity)) {
            Ok(reader) => Ok(Box::new(std::io::BufReader::new(reader))),
            Err(age::DecryptError::NoMatchingKeys) => bail!(
                "the identity in {} does not open {name}: the archive was encrypted to another key (nothing was \
                 changed; use the identity whose public key was given to --encrypt)",
                key.path.display()
            ),
            Err(e) => bail!("{name} could not be decrypted: {e}"),
        }
    }
}

impl Archive<'_> {
    /// One entry's bytes, for small ones (the settings).
    pub fn read_entry(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let mut tar = tar::Archive::new(self.reader()?);
        for entry in tar.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy() == name {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// Copies one entry into the file `to` (the dump, for a drill); an archive without it is an error.
    pub fn extract_entry(&self, name: &str, to: &Path) -> Result<()> {
        let mut tar = tar::Archive::new(self.reader()?);
        for entry in tar.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy() == name {
                let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
                std::io::copy(&mut entry, &mut out)?;
                out.flush()?;
                return Ok(());
            }
        }
        bail!("{} has no {name}", self.path.display())
    }
}

/// Writes the archive: the dump, the files (from Docker's copy of the folder), the settings
/// (`env`: only given when encrypting), the manifest with every entry's checksum last.
pub fn write_archive(
    file: std::fs::File,
    recipients: &[age::x25519::Recipient],
    now: u64,
    dump: &Path,
    files: Option<&Path>,
    env: Option<&[u8]>,
    mut manifest: Manifest,
) -> Result<Manifest> {
    let mut out = tar::Builder::new(Sink::new(file, recipients)?);
    let mut reader = Hashing::new(std::fs::File::open(dump)?);
    out.append_data(&mut file_header(std::fs::metadata(dump)?.len(), now), DUMP, &mut reader)?;
    manifest.entries.insert(DUMP.to_string(), reader.sum());
    if let Some(env) = env {
        append_env(&mut out, env, now, &mut manifest)?;
    }
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
    out.into_inner()?.finish()?;
    Ok(manifest)
}

/// Creates `<dir>/<name>.partial` (mode 600) for the first free name; returns the final
/// path, the partial one and the open file.
pub fn create_archive(
    dir: &Path,
    project: &str,
    now: u64,
    label: Option<&str>,
    encrypted: bool,
) -> Result<(PathBuf, PathBuf, std::fs::File)> {
    for n in 1..100 {
        let name = archive_name(project, now, label, n, encrypted);
        let path = dir.join(&name);
        let partial = dir.join(name + ".partial");
        if path.exists() {
            continue;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&partial) {
            Ok(file) => return Ok((path, partial, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", partial.display())),
        }
    }
    bail!("no free archive name in {}", dir.display())
}

/// Encrypts a plain archive to `recipients` beside it (`<name>.age`, what an archive taken
/// with --encrypt is), adding `env` (.env) when given, then deletes the plain one; the
/// encrypted one's path.
pub fn seal(plain: &Path, recipients: &[age::x25519::Recipient], env: Option<&[u8]>) -> Result<PathBuf> {
    let name = plain.file_name().context("an archive's name")?.to_string_lossy().into_owned();
    let sealed = plain.with_file_name(format!("{name}.age"));
    let partial = plain.with_file_name(format!("{name}.age.partial"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| -> Result<()> {
        let mut sink = Sink::new(options.open(&partial)?, recipients)?;
        match env {
            None => {
                std::io::copy(&mut std::fs::File::open(plain)?, &mut sink)?;
            }
            Some(env) => sink = copy_adding_env(plain, env, sink)?,
        }
        sink.finish()?;
        std::fs::rename(&partial, &sealed)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("encrypting {}", plain.display())));
    }
    std::fs::remove_file(plain).with_context(|| format!("deleting {} once encrypted", plain.display()))?;
    Ok(sealed)
}

/// Writes the plain archive's entries to `sink` with `.env` added (and in its manifest).
fn copy_adding_env(plain: &Path, env: &[u8], sink: Sink) -> Result<Sink> {
    let mut out = tar::Builder::new(sink);
    let mut tar = tar::Archive::new(std::fs::File::open(plain)?);
    let (mut manifest, mut mtime) = (None::<Manifest>, 0);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        mtime = entry.header().mtime()?;
        if path == Path::new(MANIFEST) {
            manifest = Some(serde_json::from_reader(&mut entry).context("reading the manifest")?);
            continue;
        }
        let mut header = entry.header().clone();
        out.append_data(&mut header, &path, &mut entry)?;
    }
    let mut manifest = manifest.context("the archive has no manifest")?;
    append_env(&mut out, env, mtime, &mut manifest)?;
    let json = serde_json::to_vec_pretty(&manifest)?;
    out.append_data(&mut file_header(json.len() as u64, mtime), MANIFEST, json.as_slice())?;
    Ok(out.into_inner()?)
}

/// Adds `.env` (mode 600) to an archive being written, and its checksum to the manifest.
fn append_env<W: Write>(out: &mut tar::Builder<W>, env: &[u8], mtime: u64, manifest: &mut Manifest) -> Result<()> {
    let mut reader = Hashing::new(env);
    let mut header = file_header(env.len() as u64, mtime);
    header.set_mode(0o600);
    out.append_data(&mut header, ENV, &mut reader)?;
    manifest.entries.insert(ENV.to_string(), reader.sum());
    Ok(())
}

/// An archive read through: its manifest and what is wrong with it.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub manifest: Manifest,
    pub problems: Vec<String>,
}

/// Reads every entry of an archive, checks each against the manifest.
pub fn check(archive: &Archive<'_>) -> Result<Checked> {
    let mut tar = tar::Archive::new(archive.reader()?);
    let archive = archive.path.as_path();
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

/// Writes a tar holding the archive's entries (those starting with `from`)
/// renamed to `to`, for copying into a container.
pub fn extract_tar(archive: &Archive<'_>, from: &str, to: &str, out: &Path) -> Result<usize> {
    let mut tar = tar::Archive::new(archive.reader()?);
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
        assert_eq!(archive_name("weknora", 1_764_115_200, None, 1, false), "weknora-weknora-20251126T000000Z.tar");
        assert_eq!(
            archive_name("prod", 1_764_115_201, Some("before-restore"), 2, true),
            "weknora-prod-20251126T000001Z-before-restore-2.tar.age"
        );
    }

    /// An archive as `take` writes one, from the given entries.
    fn write_test_archive(dir: &Path, entries: &[(&str, &[u8])], tamper: Option<(&str, &[u8])>) -> PathBuf {
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
    fn a_sealed_archive_opens_with_the_identity_and_holds_env_when_given() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let entries: [(&str, &[u8]); 2] = [(DUMP, b"dump"), ("files/kb/a.pdf", b"%PDF")];
        for env in [None, Some(&b"DB_PASSWORD=s3cret\n"[..])] {
            let plain = write_test_archive(dir.path(), &entries, None);
            let sealed = seal(&plain, &[identity.to_public()], env).unwrap();
            assert!(!plain.exists(), "the plain archive is gone once sealed");
            let bytes = std::fs::read(&sealed).unwrap();
            assert!(!bytes.windows(6).any(|w| w == b"s3cret"), "the settings are in clear");
            let key = key_file(dir.path(), "key.txt", &identity);
            let archive = Archive { path: sealed.clone(), key: Some(&key) };
            let checked = check(&archive).unwrap();
            assert_eq!(checked.problems, Vec::<String>::new());
            assert_eq!(checked.manifest.entries.contains_key(ENV), env.is_some());
            assert_eq!(archive.read_entry(ENV).unwrap().as_deref(), env);
            assert_eq!(archive.read_entry("files/kb/a.pdf").unwrap().as_deref(), Some(&b"%PDF"[..]));
            std::fs::remove_file(&sealed).unwrap();
        }
    }

    #[test]
    fn an_intact_archive_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_test_archive(dir.path(), &[(DUMP, b"dump"), ("files/kb/a.pdf", b"%PDF")], None);
        let checked = check(&Archive::plain(&path)).unwrap();
        assert_eq!(checked.problems, Vec::<String>::new());
        assert_eq!(checked.manifest.entries.len(), 2);
    }

    #[test]
    fn a_changed_byte_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_test_archive(
            dir.path(),
            &[(DUMP, b"dump"), ("files/kb/a.pdf", b"%PDF")],
            Some(("files/kb/a.pdf", b"%PDX")),
        );
        let problems = check(&Archive::plain(&path)).unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("files/kb/a.pdf is corrupt"), "{problems:?}");
    }

    #[test]
    fn a_cut_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_test_archive(dir.path(), &[(DUMP, &[7; 4096])], None);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..3000]).unwrap();
        let err = format!("{:#}", check(&Archive::plain(&path)).unwrap_err());
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
        let err = format!("{:#}", check(&Archive::plain(&path)).unwrap_err());
        assert!(err.contains("9.0.0"), "{err}");
    }

    /// A backup through `write_archive` itself, encrypted to `recipient` when given.
    fn backup(dir: &Path, recipient: Option<&age::x25519::Recipient>) -> PathBuf {
        let dump = dir.join("dump");
        std::fs::write(&dump, b"PGDMP the whole database").unwrap();
        let (path, partial, file) = create_archive(dir, "p", 1_764_115_200, None, recipient.is_some()).unwrap();
        let manifest = Manifest {
            format: FORMAT,
            created: "2025-11-26T00:00:00Z".into(),
            project: "p".into(),
            app_version: "0.1.0".into(),
            postgres_image: "img".into(),
            schema_version: 7,
            storage: "local".into(),
            files_included: false,
            rows: BTreeMap::new(),
            entries: BTreeMap::new(),
        };
        let recipients: Vec<_> = recipient.into_iter().cloned().collect();
        let env = recipient.map(|_| b"DB_PASSWORD=hunter2-never-in-clear\n".as_slice());
        write_archive(file, &recipients, 0, &dump, None, env, manifest).unwrap();
        std::fs::rename(partial, &path).unwrap();
        path
    }

    fn key_file(dir: &Path, name: &str, identity: &age::x25519::Identity) -> Key {
        use age::secrecy::ExposeSecret;
        let path = dir.join(name);
        std::fs::write(&path, format!("# a test key\n{}\n", identity.to_string().expose_secret())).unwrap();
        Key::load(&path).unwrap()
    }

    #[test]
    fn an_encrypted_archive_opens_with_its_identity_only_and_holds_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let right = age::x25519::Identity::generate();
        let path = backup(dir.path(), Some(&right.to_public()));
        assert!(path.to_string_lossy().ends_with(".tar.age"), "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(AGE_MAGIC));
        for clear in [&b"hunter2"[..], b"PGDMP", b"manifest.json"] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{} is in clear", String::from_utf8_lossy(clear));
        }
        let key = key_file(dir.path(), "right.txt", &right);
        let checked = check(&Archive { path: path.clone(), key: Some(&key) }).unwrap();
        assert_eq!(checked.problems, Vec::<String>::new());
        assert!(checked.manifest.entries.contains_key(ENV) && checked.manifest.entries.contains_key(DUMP));

        let wrong = key_file(dir.path(), "wrong.txt", &age::x25519::Identity::generate());
        let err = check(&Archive { path: path.clone(), key: Some(&wrong) }).unwrap_err().to_string();
        assert!(err.contains("wrong.txt does not open") && err.contains("another key"), "{err}");
        let err = check(&Archive::plain(&path)).unwrap_err().to_string();
        assert!(err.contains("is encrypted") && err.contains("--identity"), "{err}");
    }

    #[test]
    fn a_plain_archive_never_holds_the_settings_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = backup(dir.path(), None);
        let checked = check(&Archive::plain(&path)).unwrap();
        assert!(!checked.manifest.entries.contains_key(ENV));
        let err = recipients(&["age1nope".into()]).unwrap_err().to_string();
        assert!(err.contains("`age1nope` is not an age public key"), "{err}");
        std::fs::write(dir.path().join("k"), "not a key\n").unwrap();
        let err = format!("{:#}", Key::load(&dir.path().join("k")).err().unwrap());
        assert!(err.contains("not an age identity file") || err.contains("identity file"), "{err}");
    }
}
