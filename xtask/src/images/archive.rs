//! Image archives written by xtask itself, byte for byte the same for the same inputs:
//! one layer tar with sorted entries, fixed owners and mtime = commit time, and a config
//! whose `created` is the commit time. Docker's image ID is the digest of the config, so
//! two builds of one commit get the same ID — which Docker's classic builder cannot do
//! (it stamps the build time and keeps file mtimes).
//!
//! The archive is in the format `docker save` writes and `docker load` reads:
//! `manifest.json`, `<config digest>.json`, `<layer digest>/layer.tar`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A file or directory in the image, by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// `None` for a directory.
    pub data: Option<Vec<u8>>,
}

impl Entry {
    pub fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
        Entry { path: path.into(), mode, uid: 0, gid: 0, data: Some(data) }
    }

    pub fn dir(path: &str, mode: u32, owner: u64) -> Entry {
        Entry { path: path.into(), mode, uid: owner, gid: owner, data: None }
    }
}

/// The runtime side of an image config (Docker's `ContainerConfig`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub user: String,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub exposed_ports: Vec<String>,
    /// The healthcheck command (exec form) and its interval, timeout, start period in seconds.
    pub healthcheck: Vec<String>,
    pub health_timing: (u64, u64, u64),
    pub labels: BTreeMap<String, String>,
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", weknora_operator::digest::hex(&Sha256::digest(bytes)))
}

/// Every directory an entry needs, as root-owned 0755 entries, unless listed explicitly.
fn with_parents(entries: &[Entry]) -> Vec<Entry> {
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries {
        let trimmed = e.path.trim_matches('/');
        let mut prefix = String::new();
        let parts: Vec<&str> = trimmed.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix.push_str(part);
            prefix.push('/');
            all.entry(prefix.clone()).or_insert_with(|| Entry::dir(&prefix, 0o755, 0));
        }
        let key = if e.data.is_none() { format!("{trimmed}/") } else { trimmed.to_string() };
        all.insert(key.clone(), Entry { path: key, ..e.clone() });
    }
    all.into_values().collect()
}

/// One layer: entries sorted by path, parents created, owners and modes as given, every
/// mtime `epoch`, no user or group names.
pub fn layer_tar(entries: &[Entry], epoch: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in with_parents(entries) {
        let mut header = tar::Header::new_ustar();
        header.set_mode(e.mode);
        header.set_uid(e.uid);
        header.set_gid(e.gid);
        header.set_mtime(epoch);
        let data: &[u8] = match &e.data {
            Some(d) => {
                header.set_entry_type(tar::EntryType::Regular);
                d
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                &[]
            }
        };
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, &e.path, data).with_context(|| format!("adding {} to the layer", e.path))?;
    }
    Ok(tar.into_inner()?)
}

/// The image config: platform, runtime settings, the layer's digest, `created` = commit time.
pub fn config_json(runtime: &Runtime, arch: &str, variant: Option<&str>, created: &str, layer_digest: &str) -> Vec<u8> {
    let seconds = |s: u64| s * 1_000_000_000;
    let (interval, timeout, start) = runtime.health_timing;
    let ports: BTreeMap<&str, serde_json::Value> =
        runtime.exposed_ports.iter().map(|p| (p.as_str(), json!({}))).collect();
    let test: Vec<&str> = std::iter::once("CMD").chain(runtime.healthcheck.iter().map(String::as_str)).collect();
    let mut config = json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "User": runtime.user,
            "Entrypoint": runtime.entrypoint,
            "Env": runtime.env,
            "WorkingDir": runtime.working_dir,
            "ExposedPorts": ports,
            "Labels": runtime.labels,
            "Healthcheck": {
                "Test": test,
                "Interval": seconds(interval),
                "Timeout": seconds(timeout),
                "StartPeriod": seconds(start),
                "Retries": 3,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": created, "created_by": "cargo xtask build-images" }],
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    // serde_json's maps are sorted: the same config always serializes to the same bytes.
    serde_json::to_vec(&config).expect("a JSON value serializes")
}

/// A `docker load` archive of one image with one layer, tagged with `repo_tags`.
pub fn image_archive(config: &[u8], layer: &[u8], repo_tags: &[String], epoch: u64) -> Result<Vec<u8>> {
    let config_name = format!("{}.json", hex(&digest(config)));
    let layer_name = format!("{}/layer.tar", hex(&digest(layer)));
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": [layer_name] }]);
    let files = [
        (config_name.as_str(), config.to_vec()),
        (layer_name.as_str(), layer.to_vec()),
        ("manifest.json", serde_json::to_vec(&manifest)?),
    ];
    let entries: Vec<Entry> = files.into_iter().map(|(p, d)| Entry::file(p, 0o644, d)).collect();
    layer_tar(&entries, epoch)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar_bytes: &[u8]) -> Vec<(String, u32, u64, u64, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let path = e.path().unwrap().display().to_string();
                (path, h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap())
            })
            .collect()
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry::file("/usr/local/bin/tool", 0o755, b"binary".to_vec()),
            Entry::dir("/var/lib/weknora", 0o755, 65532),
            Entry::file("/etc/ssl/certs/ca-certificates.crt", 0o644, b"certs".to_vec()),
        ]
    }

    #[test]
    fn layers_are_sorted_with_parents_fixed_owners_and_the_commit_time() {
        let tar = layer_tar(&entries(), 1_764_105_281).unwrap();
        let got = listing(&tar);
        let paths: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca-certificates.crt",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool",
                "var/",
                "var/lib/",
                "var/lib/weknora/",
            ]
        );
        assert!(got.iter().all(|e| e.4 == 1_764_105_281), "{got:?}");
        let find = |p: &str| got.iter().find(|e| e.0 == p).unwrap().clone();
        assert_eq!(find("usr/local/bin/tool").1, 0o755);
        assert_eq!(find("etc/ssl/certs/ca-certificates.crt").1, 0o644);
        assert_eq!((find("var/lib/weknora/").2, find("var/lib/weknora/").3), (65532, 65532));
        assert_eq!(find("var/lib/").2, 0);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_in_any_order() {
        let mut reversed = entries();
        reversed.reverse();
        let a = layer_tar(&entries(), 42).unwrap();
        let b = layer_tar(&reversed, 42).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&layer_tar(&entries(), 43).unwrap()));
    }

    #[test]
    fn configs_are_stable_and_name_the_layer() {
        let runtime = Runtime {
            user: "65532:65532".into(),
            entrypoint: vec!["/usr/local/bin/tool".into()],
            env: vec!["PATH=/usr/local/bin".into()],
            working_dir: "/".into(),
            exposed_ports: vec!["8080/tcp".into()],
            healthcheck: vec!["/usr/local/bin/tool".into(), "healthcheck".into()],
            health_timing: (10, 5, 30),
            labels: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
        };
        let a = config_json(&runtime, "arm64", Some("v8"), "2025-11-25T21:14:41Z", "sha256:abc");
        assert_eq!(a, config_json(&runtime, "arm64", Some("v8"), "2025-11-25T21:14:41Z", "sha256:abc"));
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["architecture"], "arm64");
        assert_eq!(v["variant"], "v8");
        assert_eq!(v["created"], "2025-11-25T21:14:41Z");
        assert_eq!(v["rootfs"]["diff_ids"][0], "sha256:abc");
        assert_eq!(v["config"]["Healthcheck"]["Test"], json!(["CMD", "/usr/local/bin/tool", "healthcheck"]));
        assert_eq!(v["config"]["Healthcheck"]["Interval"], 10_000_000_000u64);
        assert_eq!(v["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    }

    #[test]
    fn archives_hold_manifest_config_and_layer_under_their_digests() {
        let layer = layer_tar(&entries(), 1).unwrap();
        let config = br#"{"architecture":"amd64"}"#.to_vec();
        let archive = image_archive(&config, &layer, &["weknora/app:0.1.0".into()], 1).unwrap();
        let mut files = BTreeMap::new();
        for e in tar::Archive::new(&archive[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(e.path().unwrap().display().to_string(), data);
        }
        let config_name = format!("{}.json", hex(&digest(&config)));
        let layer_name = format!("{}/layer.tar", hex(&digest(&layer)));
        assert_eq!(files[&config_name], config);
        assert_eq!(files[&layer_name], layer);
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(
            manifest,
            json!([{"Config": config_name, "RepoTags": ["weknora/app:0.1.0"], "Layers": [layer_name]}])
        );
    }
}
