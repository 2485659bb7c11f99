//! `.env` files as docker compose reads them: `KEY=VALUE` lines, `#` comments, optional
//! quotes. Checks an operator's `.env` against `.env.example` without ever printing a value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use crate::paths;

/// One `KEY=VALUE` assignment and the line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A parsed file: its assignments, and the lines that are not assignments at all.
#[derive(Debug, Default)]
pub struct EnvFile {
    pub entries: Vec<Entry>,
    /// (line, why) for lines compose would reject or misread.
    pub malformed: Vec<(usize, String)>,
    /// Keys of commented-out assignments (`# KEY=value`): in `.env.example`, the optional
    /// variables it documents.
    pub commented: BTreeSet<String>,
}

impl EnvFile {
    pub fn parse(text: &str) -> EnvFile {
        let mut file = EnvFile::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some((key, _)) = comment.trim_start().split_once('=')
                    && is_valid_key(key.trim_end())
                {
                    file.commented.insert(key.trim_end().to_string());
                }
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            let assignment = trimmed.strip_prefix("export ").unwrap_or(trimmed);
            let Some((key, value)) = assignment.split_once('=') else {
                file.malformed.push((line, "not a KEY=VALUE assignment".into()));
                continue;
            };
            let key = key.trim();
            if !is_valid_key(key) {
                file.malformed.push((line, format!("`{key}` is not a valid variable name")));
                continue;
            }
            match unquote(value.trim()) {
                Ok(value) => file.entries.push(Entry { key: key.to_string(), value, line }),
                Err(why) => file.malformed.push((line, format!("{key}: {why}"))),
            }
        }
        file
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        // Compose lets the last assignment win.
        self.entries.iter().rev().find(|e| e.key == key).map(|e| e.value.as_str())
    }

    pub fn keys(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.key.as_str()).collect()
    }

    /// Keys assigned more than once (the later one silently wins: usually a mistake).
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut dup = BTreeSet::new();
        for e in &self.entries {
            if !seen.insert(e.key.as_str()) {
                dup.insert(e.key.clone());
            }
        }
        dup.into_iter().collect()
    }
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unquote(value: &str) -> Result<String, String> {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote) {
            return match inner.find(quote) {
                Some(end) if inner[end + 1..].trim().is_empty() || inner[end + 1..].trim_start().starts_with('#') => {
                    Ok(inner[..end].to_string())
                }
                Some(_) => Err("text after the closing quote".into()),
                None => Err("the quote is never closed".into()),
            };
        }
    }
    // Unquoted: ` #` starts a comment, as in compose.
    let value = match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    };
    Ok(value.trim_end().to_string())
}

/// Variables as compose and the services see them: the process environment wins over
/// `.env`, which wins over nothing (callers supply defaults).
#[derive(Debug, Default)]
pub struct Vars {
    process: BTreeMap<String, String>,
    file: EnvFile,
    defaults: EnvFile,
}

impl Vars {
    /// This process's environment over `.env` over the defaults `.env.example` states (its
    /// placeholders left out), so that no default is repeated in code. Absent files: empty.
    pub fn load() -> Vars {
        let read =
            |path: std::path::PathBuf| std::fs::read_to_string(path).map(|t| EnvFile::parse(&t)).unwrap_or_default();
        let mut vars = Vars::new(std::env::vars().collect(), read(crate::paths::env_file()));
        vars.defaults = read(crate::paths::env_example());
        vars
    }

    pub fn new(process: BTreeMap<String, String>, file: EnvFile) -> Vars {
        Vars { process, file, defaults: EnvFile::default() }
    }

    /// The value, if set to something non-empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        let default = || self.defaults.get(key).filter(|v| !is_placeholder(v));
        self.process
            .get(key)
            .map(String::as_str)
            .or_else(|| self.file.get(key))
            .or_else(default)
            .filter(|v| !v.is_empty())
    }
}

/// Values in `.env.example` that mean "this must be chosen" (`<generated>` secrets are
/// chosen by `cargo xtask start`). An empty value in the example means optional.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.contains("change-me") || v.contains("changeme") || (v.starts_with('<') && v.ends_with('>'))
}

/// The value in `.env.example` of secrets that `.env` gets generated.
pub const GENERATED: &str = "<generated>";

/// A new `.env` from the example's text: every `KEY=<generated>` gets a fresh random value
/// (32 bytes from the OS, hex); everything else is copied as it is.
pub fn new_env_text(example: &str) -> std::io::Result<String> {
    let mut out = String::with_capacity(example.len() + 256);
    for line in example.lines() {
        match generated_key(line) {
            Some(key) => out.push_str(&format!("{key}={}", random_hex(32)?)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// The key of a `KEY=<generated>` line of the example (not a commented one).
fn generated_key(line: &str) -> Option<&str> {
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    (value.trim() == GENERATED && is_valid_key(key)).then_some(key)
}

/// Secrets a newer `.env.example` brought that an existing `.env` lacks: the text to append
/// to it (a comment saying who added them and when, then `KEY=<fresh random value>` for each),
/// and their names. None when nothing is missing. Keys the file has, even empty, are left to
/// the operator: this never changes a value.
pub fn missing_secrets(env: &str, example: &str, added_by: &str) -> std::io::Result<Option<(String, Vec<String>)>> {
    let have = EnvFile::parse(env);
    let mut keys: Vec<String> = Vec::new();
    for key in example.lines().filter_map(generated_key) {
        if have.get(key).is_none() && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    if !env.is_empty() && !env.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("\n# Added by {added_by}: generated secrets that .env.example has and this file lacked.\n"));
    for key in &keys {
        text.push_str(&format!("{key}={}\n", random_hex(32)?));
    }
    Ok(Some((text, keys)))
}

/// How a pin's comment starts: the line `pin` writes above the key, which `unpin` removes with it.
const PIN_MARK: &str = "# Pinned by";

/// `text` with `key=value` set under a comment saying who pinned it and why: an earlier pin
/// of the key (with its comment) or a plain assignment of it is replaced.
pub fn pin(text: &str, key: &str, value: &str, why: &str) -> String {
    let mut out = unpin(text, key);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{PIN_MARK} {why}\n{key}={value}\n"));
    out
}

/// `text` without its assignments of `key` (and the pin comment above each).
pub fn unpin(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let assigns =
        |line: &str| line.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let pin_comment = line.starts_with(PIN_MARK) && lines.get(i + 1).is_some_and(|next| assigns(next));
        if !assigns(line) && !pin_comment {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(crate::digest::hex(&buf))
}

/// What is wrong with a `.env` compared with the `.env.example` it came from.
/// Names keys and line numbers only: values may be secrets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvReport {
    /// Keys the example defines that `.env` lacks.
    pub missing: Vec<String>,
    /// Keys the example leaves for the operator to fill (empty or a placeholder) that are
    /// still empty or still the placeholder in `.env`.
    pub unset: Vec<String>,
    pub malformed: Vec<(usize, String)>,
    pub duplicates: Vec<String>,
    /// Keys in `.env` the example does not know, not even commented out: harmless, but often
    /// a typo.
    pub unknown: Vec<String>,
    /// Whether every missing key is a `<generated>` secret, which `cargo xtask start` adds.
    pub missing_only_generated: bool,
}

impl EnvReport {
    pub fn compare(env: &EnvFile, example: &EnvFile) -> EnvReport {
        let keys = env.keys();
        let example_keys = example.keys();
        let missing: Vec<String> = example_keys.difference(&keys).map(|k| k.to_string()).collect();
        let unset = example
            .entries
            .iter()
            .filter(|e| is_placeholder(&e.value))
            .filter(|e| env.get(&e.key).is_some_and(|v| v.trim().is_empty() || is_placeholder(v) || v == e.value))
            .map(|e| e.key.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let unknown = keys
            .difference(&example_keys)
            .filter(|k| !example.commented.contains(**k))
            .map(|k| k.to_string())
            .collect();
        let missing_only_generated =
            !missing.is_empty() && missing.iter().all(|k| example.get(k).is_some_and(|v| v.trim() == GENERATED));
        EnvReport {
            missing,
            unset,
            malformed: env.malformed.clone(),
            duplicates: env.duplicates(),
            unknown,
            missing_only_generated,
        }
    }

    /// Problems that stop the stack from starting correctly.
    pub fn is_broken(&self) -> bool {
        !self.missing.is_empty() || !self.unset.is_empty() || !self.malformed.is_empty()
    }
}

/// Creates `.env` from `.env.example` with generated secrets when it is missing. To an
/// existing one it appends, with fresh values, the `<generated>` secrets of the example it
/// lacks (a newer version's), and changes nothing else. `by` names the command, for the
/// comment above them. Says which keys it added, never their values.
pub fn ensure_env_file(path: &Path, by: &str) -> Result<bool> {
    let example = std::fs::read_to_string(paths::env_example())
        .with_context(|| format!("reading {}", paths::env_example().display()))?;
    if path.exists() {
        let env = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let stamp =
            crate::host::in_host_words(&format!("`cargo xtask {by}` at {}", crate::utc::rfc3339(crate::utc::now())));
        let Some((text, keys)) =
            missing_secrets(&env, &example, &stamp).context("generating secrets from /dev/urandom")?
        else {
            return Ok(false);
        };
        // Appending keeps the file's owner and mode (600 as `start` made it).
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("adding {} to {}", keys.join(", "), path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        eprintln!("==> added to {} the generated secrets it lacked: {}", path.display(), keys.join(", "));
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata()?.permissions());
        if mode & 0o077 != 0 {
            eprintln!(
                "    {} is readable by other users (mode {:o}): `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        return Ok(true);
    }
    let text = new_env_text(&example).context("generating secrets from /dev/urandom")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    eprintln!("==> created {} from .env.example with generated secrets (mode 600)", path.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_syntax() {
        let f = EnvFile::parse(
            "# comment\n\nA=1\nexport B = two \nC=\"quoted # not a comment\"\nD='single'\nE=plain # comment\nF=\n",
        );
        assert!(f.malformed.is_empty(), "{:?}", f.malformed);
        assert_eq!(f.get("A"), Some("1"));
        assert_eq!(f.get("B"), Some("two"));
        assert_eq!(f.get("C"), Some("quoted # not a comment"));
        assert_eq!(f.get("D"), Some("single"));
        assert_eq!(f.get("E"), Some("plain"));
        assert_eq!(f.get("F"), Some(""));
        assert_eq!(f.entries[0].line, 3);
    }

    #[test]
    fn reports_malformed_lines_with_their_number() {
        let f = EnvFile::parse("GOOD=1\njust words\n1BAD=2\nQ=\"open\nR='x' y\n");
        let lines: Vec<usize> = f.malformed.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(f.malformed[2].1.contains("never closed"));
    }

    #[test]
    fn the_environment_wins_over_the_file_and_empty_means_unset() {
        let vars = Vars::new(
            [("A".to_string(), "env".to_string()), ("E".to_string(), String::new())].into(),
            EnvFile::parse("A=file\nB=file\nE=file\nC=\n"),
        );
        assert_eq!(vars.get("A"), Some("env"));
        assert_eq!(vars.get("B"), Some("file"));
        assert_eq!(vars.get("C"), None);
        assert_eq!(vars.get("E"), None, "an empty variable unsets, as in compose");
        assert_eq!(vars.get("Z"), None);
    }

    #[test]
    fn the_last_assignment_wins_and_is_flagged() {
        let f = EnvFile::parse("A=1\nA=2\n");
        assert_eq!(f.get("A"), Some("2"));
        assert_eq!(f.duplicates(), ["A"]);
    }

    const EXAMPLE: &str = "APP_PORT=8080\nDB_PASSWORD=<generated>\nREDIS_PASSWORD=change-me\n# OPTIONAL=1\nTOKEN=\n";

    #[test]
    fn a_complete_env_passes() {
        let env = EnvFile::parse("APP_PORT=9090\nDB_PASSWORD=s3cret\nREDIS_PASSWORD=r3dis\nTOKEN=\n");
        let report = EnvReport::compare(&env, &EnvFile::parse(EXAMPLE));
        assert_eq!(report, EnvReport::default());
        assert!(!report.is_broken());
    }

    #[test]
    fn names_missing_and_unset_keys() {
        let env = EnvFile::parse("DB_PASSWORD=\nREDIS_PASSWORD=change-me\nAPP_PROT=1\nTOKEN=\n");
        let report = EnvReport::compare(&env, &EnvFile::parse(EXAMPLE));
        assert_eq!(report.missing, ["APP_PORT"]);
        assert_eq!(report.unset, ["DB_PASSWORD", "REDIS_PASSWORD"]);
        assert_eq!(report.unknown, ["APP_PROT"]);
        assert!(report.is_broken());
    }

    #[test]
    fn a_new_env_gets_fresh_secrets_and_keeps_everything_else() {
        let example = "# generated\nDB_PASSWORD=<generated>\nAPP_PORT=8080\n# X=<generated>\nTOKEN=\n";
        let a = new_env_text(example).unwrap();
        let b = new_env_text(example).unwrap();
        let env = EnvFile::parse(&a);
        let secret = env.get("DB_PASSWORD").unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b, "every .env gets its own secrets");
        assert!(a.contains("APP_PORT=8080\n# X=<generated>\nTOKEN=\n"), "{a}");
        assert!(!EnvReport::compare(&env, &EnvFile::parse(example)).is_broken());
    }

    #[test]
    fn an_older_env_gets_only_the_secrets_it_lacks() {
        let example = "DB_PASSWORD=<generated>\nAPP_PORT=8080\n# X=<generated>\nMODELS_ENCRYPTION_KEY=<generated>\n\
                       NEW_SETTING=1\nTOKEN=<generated>\n";
        // No trailing newline, an empty TOKEN the operator chose: both kept as they are.
        let old = "DB_PASSWORD=s3cret\nAPP_PORT=9090\nTOKEN=";
        let (added, keys) =
            missing_secrets(old, example, "`cargo xtask start` at 2026-12-01T10:00:00Z").unwrap().unwrap();
        assert_eq!(
            keys,
            ["MODELS_ENCRYPTION_KEY"],
            "only missing <generated> keys; commented and plain ones are not added"
        );
        let text = format!("{old}{added}");
        assert!(text.starts_with("DB_PASSWORD=s3cret\nAPP_PORT=9090\nTOKEN=\n"), "{text}");
        assert!(added.contains("# Added by `cargo xtask start` at 2026-12-01T10:00:00Z"), "{added}");
        let env = EnvFile::parse(&text);
        assert!(env.malformed.is_empty(), "{:?}", env.malformed);
        assert_eq!(env.get("DB_PASSWORD"), Some("s3cret"));
        assert_eq!(env.get("TOKEN"), Some(""));
        let key = env.get("MODELS_ENCRYPTION_KEY").unwrap();
        assert!(key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        assert!(!added.contains("s3cret"));
        assert_eq!(missing_secrets(&text, example, "x").unwrap(), None, "a second run adds nothing");
    }

    #[test]
    fn commented_keys_are_optional_and_unknown_keys_are_not_fatal() {
        let env = EnvFile::parse("APP_PORT=1\nDB_PASSWORD=x\nREDIS_PASSWORD=y\nEXTRA=1\nTOKEN=\n");
        let report = EnvReport::compare(&env, &EnvFile::parse(EXAMPLE));
        assert!(report.missing.is_empty());
        assert_eq!(report.unknown, ["EXTRA"]);
        assert!(!report.is_broken());
    }

    #[test]
    fn a_pin_replaces_the_key_and_unpin_removes_it_with_its_comment() {
        let env = "DB_PASSWORD=x\nWEKNORA_VERSION=0.1.0\nAPP_PORT=8080\n# WEKNORA_VERSION=commented stays\n";
        let pinned = pin(env, "WEKNORA_VERSION", "pre-upgrade", "`cargo xtask rollback` at T");
        assert_eq!(
            pinned,
            "DB_PASSWORD=x\nAPP_PORT=8080\n# WEKNORA_VERSION=commented stays\n\
             # Pinned by `cargo xtask rollback` at T\nWEKNORA_VERSION=pre-upgrade\n"
        );
        assert_eq!(EnvFile::parse(&pinned).get("WEKNORA_VERSION"), Some("pre-upgrade"));
        let again = pin(&pinned, "WEKNORA_VERSION", "pre-upgrade", "`cargo xtask rollback` at U");
        assert_eq!(again.matches("WEKNORA_VERSION=pre-upgrade").count(), 1, "{again}");
        let unpinned = unpin(&again, "WEKNORA_VERSION");
        assert_eq!(unpinned, "DB_PASSWORD=x\nAPP_PORT=8080\n# WEKNORA_VERSION=commented stays\n");
        assert_eq!(unpin("WEKNORA_VERSION_X=1\n", "WEKNORA_VERSION"), "WEKNORA_VERSION_X=1\n", "only that key");
    }
    #[test]
    fn an_older_env_gets_the_new_secrets_and_keeps_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert!(ensure_env_file(&path, "start").unwrap(), "created");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // As a version before MODELS_ENCRYPTION_KEY made it, with the operator's own values.
        let created = std::fs::read_to_string(&path).unwrap();
        let old: String = created
            .lines()
            .filter(|l| !l.starts_with("MODELS_ENCRYPTION_KEY="))
            .map(|l| if l.starts_with("DB_PASSWORD=") { "DB_PASSWORD=mine\n".to_string() } else { format!("{l}\n") })
            .collect();
        std::fs::write(&path, &old).unwrap();

        assert!(ensure_env_file(&path, "start").unwrap(), "added");
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.starts_with(&old), "nothing before is changed");
        let added = &now[old.len()..];
        assert!(added.contains("# Added by `cargo xtask start` at 20"), "{added}");
        let env = crate::dotenv::EnvFile::parse(&now);
        assert_eq!(env.get("DB_PASSWORD"), Some("mine"));
        assert_eq!(env.get("MODELS_ENCRYPTION_KEY").map(str::len), Some(64));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let example = crate::dotenv::EnvFile::parse(&std::fs::read_to_string(paths::env_example()).unwrap());
        assert!(!crate::dotenv::EnvReport::compare(&env, &example).is_broken());

        assert!(!ensure_env_file(&path, "start").unwrap(), "a complete .env is left alone");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), now);
    }
}
