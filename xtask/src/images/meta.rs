//! What an image says about itself: version, commit, build time, toolchain. The same facts
//! become OCI labels, image tags and (through environment variables read by
//! crates/buildinfo) the binaries' `--version` and `/api/v1/system/info`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use weknora_operator::process::stdout_of;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildMeta {
    /// The workspace version, or the tag's version when HEAD sits exactly on a `v*` tag.
    pub version: String,
    /// The full commit hash.
    pub commit: String,
    /// The first 12 characters of the commit hash.
    pub short: String,
    /// Uncommitted changes in the work tree.
    pub dirty: bool,
    /// Commit time as Unix seconds: `SOURCE_DATE_EPOCH`.
    pub epoch: i64,
    /// Commit time as RFC 3339 in UTC: the images' `created`.
    pub created: String,
    /// `rustc --version` of the pinned toolchain.
    pub toolchain: String,
    /// Where the source lives (the workspace's `repository`).
    pub source: String,
}

impl BuildMeta {
    /// Reads git and the toolchain. `version` is the workspace version from cargo metadata.
    pub fn detect(version: &str, source: &str) -> Result<BuildMeta> {
        let git = |args: &[&str]| stdout_of("git", args).map(|s| s.trim().to_string());
        let commit = git(&["rev-parse", "HEAD"])
            .context("cannot read the commit: images are built from a git checkout with at least one commit")?;
        let dirty = !git(&["status", "--porcelain"]).unwrap_or_default().is_empty();
        let epoch: i64 = git(&["log", "-1", "--format=%ct", "HEAD"])
            .and_then(|s| s.parse().ok())
            .context("cannot read the commit time from git")?;
        let tag = git(&["describe", "--tags", "--exact-match", "HEAD"]);
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let toolchain = stdout_of(&rustc, &["--version"]).map(|s| s.trim().to_string()).context("running rustc")?;
        Ok(BuildMeta {
            version: version_from(version, tag.as_deref()),
            short: commit.chars().take(12).collect(),
            commit,
            dirty,
            epoch,
            created: rfc3339_utc(epoch)?,
            toolchain,
            source: source.to_string(),
        })
    }

    /// The commit as the binaries and labels report it: `-dirty` marks uncommitted changes.
    pub fn revision(&self) -> String {
        if self.dirty { format!("{}-dirty", self.commit) } else { self.commit.clone() }
    }

    /// Tags for one image: `<version>`, `<version>-<shortsha>[-dirty]`, plus the extra
    /// aliases asked for (`latest` only ever as one of those).
    pub fn tags(&self, extra: &[String]) -> Vec<String> {
        let dirty = if self.dirty { "-dirty" } else { "" };
        let mut tags = vec![self.version.clone(), format!("{}-{}{dirty}", self.version, self.short)];
        for t in extra {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// OCI labels for the image of `title`.
    pub fn labels(&self, title: &str, description: &str) -> BTreeMap<String, String> {
        let oci = |k: &str| format!("org.opencontainers.image.{k}");
        BTreeMap::from([
            (oci("version"), self.version.clone()),
            (oci("revision"), self.revision()),
            (oci("created"), self.created.clone()),
            (oci("source"), self.source.clone()),
            (oci("title"), title.to_string()),
            (oci("description"), description.to_string()),
            (oci("licenses"), "MIT".to_string()),
            (TOOLCHAIN_LABEL.to_string(), self.toolchain.clone()),
        ])
    }

    /// The environment crates/buildinfo reads at compile time.
    pub fn build_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WEKNORA_VERSION", self.version.clone()),
            ("WEKNORA_COMMIT", self.revision()),
            ("WEKNORA_BUILD_TIME", self.created.clone()),
            ("SOURCE_DATE_EPOCH", self.epoch.to_string()),
        ]
    }
}

/// The label that carries `rustc --version`.
pub const TOOLCHAIN_LABEL: &str = "io.github.weknora.toolchain";

/// A `v1.2.3` (or `1.2.3`) tag on HEAD wins over the workspace version.
fn version_from(workspace: &str, tag: Option<&str>) -> String {
    match tag.map(|t| t.strip_prefix('v').unwrap_or(t)) {
        Some(t) if t.starts_with(|c: char| c.is_ascii_digit()) => t.to_string(),
        _ => workspace.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(epoch: i64) -> Result<String> {
    let Ok(secs) = u64::try_from(epoch) else { bail!("commit time {epoch} is before 1970") };
    Ok(weknora_operator::utc::rfc3339(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dirty: bool) -> BuildMeta {
        BuildMeta {
            version: "0.1.0".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            short: "0123456789ab".into(),
            dirty,
            epoch: 1_764_105_281,
            created: "2025-11-25T21:14:41Z".into(),
            toolchain: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
            source: "https://github.com/weknora/weknora".into(),
        }
    }

    #[test]
    fn formats_commit_times_as_rfc3339() {
        assert_eq!(rfc3339_utc(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_764_105_281).unwrap(), "2025-11-25T21:14:41Z");
        assert_eq!(rfc3339_utc(4_107_542_399).unwrap(), "2100-02-28T23:59:59Z");
        assert!(rfc3339_utc(-1).is_err());
    }

    #[test]
    fn tags_are_version_and_version_sha_with_latest_only_as_an_alias() {
        assert_eq!(meta(false).tags(&[]), ["0.1.0", "0.1.0-0123456789ab"]);
        assert_eq!(meta(true).tags(&[]), ["0.1.0", "0.1.0-0123456789ab-dirty"]);
        assert_eq!(meta(false).tags(&["latest".into(), "0.1.0".into()]), ["0.1.0", "0.1.0-0123456789ab", "latest"]);
    }

    #[test]
    fn a_release_tag_sets_the_version() {
        assert_eq!(version_from("0.1.0", Some("v0.2.0")), "0.2.0");
        assert_eq!(version_from("0.1.0", Some("1.0.0-rc.1")), "1.0.0-rc.1");
        assert_eq!(version_from("0.1.0", Some("nightly")), "0.1.0");
        assert_eq!(version_from("0.1.0", None), "0.1.0");
    }

    #[test]
    fn labels_carry_the_oci_keys_and_the_toolchain() {
        let labels = meta(true).labels("weknora-app", "the API");
        let get = |k: &str| labels.get(&format!("org.opencontainers.image.{k}")).map(String::as_str);
        assert_eq!(get("version"), Some("0.1.0"));
        assert_eq!(get("revision"), Some("0123456789abcdef0123456789abcdef01234567-dirty"));
        assert_eq!(get("created"), Some("2025-11-25T21:14:41Z"));
        assert_eq!(get("source"), Some("https://github.com/weknora/weknora"));
        assert_eq!(get("title"), Some("weknora-app"));
        assert_eq!(labels.get(TOOLCHAIN_LABEL).map(String::as_str), Some("rustc 1.95.0 (59807616e 2026-04-14)"));
    }

    #[test]
    fn the_dockerfiles_declare_the_labels_xtask_sets() {
        let dockerfiles = [
            include_str!("../../../docker/Dockerfile.app"),
            include_str!("../../../docker/Dockerfile.docreader"),
            include_str!("../../../docker/Dockerfile.frontend"),
        ];
        let keys = meta(false).labels("t", "d").into_keys().collect::<Vec<_>>();
        for dockerfile in dockerfiles {
            let declared =
                dockerfile.matches("org.opencontainers.image.").count() + dockerfile.matches(TOOLCHAIN_LABEL).count();
            assert_eq!(declared, keys.len(), "a Dockerfile declares other labels than {keys:?}");
            for key in &keys {
                assert!(dockerfile.contains(&format!("{key}=")), "a Dockerfile lacks the label {key}");
            }
        }
    }

    #[test]
    fn the_binaries_get_the_same_facts() {
        let env = meta(false).build_env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WEKNORA_COMMIT"), Some("0123456789abcdef0123456789abcdef01234567"));
        assert_eq!(get("WEKNORA_BUILD_TIME"), Some("2025-11-25T21:14:41Z"));
        assert_eq!(get("SOURCE_DATE_EPOCH"), Some("1764105281"));
    }
}
