//! Every path the operator uses, in one place, relative to its root: the checkout for
//! `cargo xtask`, the unpacked release bundle for `weknora`. Commands never spell paths
//! themselves.

use std::path::{Path, PathBuf};

/// The root the running tool was given (`crate::host::install`); in this crate's own tests, the
/// checkout.
pub fn project_root() -> PathBuf {
    match crate::host::HOST.get() {
        Some(host) => host.root.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the checkout"),
    }
}

/// The operator's configuration for the stack (never committed); `WEKNORA_ENV_FILE`
/// points elsewhere (the end-to-end tests use their own).
pub fn env_file() -> PathBuf {
    match std::env::var_os("WEKNORA_ENV_FILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => project_root().join(".env"),
    }
}

/// The documented template `.env` is checked against.
pub fn env_example() -> PathBuf {
    project_root().join(".env.example")
}

/// Where `backup` writes archives unless BACKUP_DIR or --output says otherwise
/// (ignored by git).
pub fn backups() -> PathBuf {
    project_root().join("backups")
}

/// sqlx migrations: `<YYYYMMDDHHMMSS>_<name>.up.sql` and `.down.sql`.
pub fn migrations() -> PathBuf {
    project_root().join("migrations")
}

/// The app's configuration file (shipped in its image, and in a bundle).
pub fn app_config() -> PathBuf {
    project_root().join("config/config.yaml")
}

/// The production compose file.
pub fn compose_file() -> PathBuf {
    project_root().join("docker-compose.yml")
}

/// The development compose file.
pub fn compose_dev_file() -> PathBuf {
    project_root().join("docker-compose.dev.yml")
}

/// The operator's own runtime files (Ollama's log and pid).
pub fn state_dir() -> PathBuf {
    project_root().join("target")
}

/// The app's binary, configuration and CA certificates, copied out of its image for the
/// backup service (which exports a MinIO/S3 bucket's objects with them).
pub fn backup_service_app() -> PathBuf {
    state_dir().join("backup-service-app")
}

/// The stack file `deploy swarm` last wrote (no secret is in it).
pub fn swarm_stack() -> PathBuf {
    state_dir().join("swarm-stack.json")
}

/// A release bundle's images: `docker save` archives and their manifest.
pub fn bundle_images() -> PathBuf {
    project_root().join("images")
}

/// The runbook.
pub fn runbook() -> PathBuf {
    project_root().join("docs/operations.md")
}

/// A release bundle's description: version, commit, platform, image archives.
pub fn bundle_manifest() -> PathBuf {
    project_root().join("bundle.json")
}

/// Where `upgrade --bundle` keeps the files of the release it replaced, for `rollback`.
pub fn previous_release() -> PathBuf {
    project_root().join("previous")
}
