//! Every path inside the repository, in one place. Commands never spell paths themselves.

use std::path::{Path, PathBuf};

/// The repository root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
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

/// The pinned Rust toolchain.
pub fn rust_toolchain() -> PathBuf {
    project_root().join("rust-toolchain.toml")
}

/// Where `cargo xtask backup` writes archives unless BACKUP_DIR or --output says otherwise
/// (ignored by git).
pub fn backups() -> PathBuf {
    project_root().join("backups")
}

/// sqlx migrations: `<YYYYMMDDHHMMSS>_<name>.up.sql` and `.down.sql`.
pub fn migrations() -> PathBuf {
    project_root().join("migrations")
}

/// The docreader benchmark's scripts (corpus writer, Python reference parsers).
pub fn docreader_bench() -> PathBuf {
    project_root().join("services/docreader/bench")
}

/// Where `cargo xtask bench` writes its generated corpus.
pub fn bench_corpus() -> PathBuf {
    project_root().join("target/bench-corpus")
}

/// docreader's cargo-fuzz project (outside the workspace).
pub fn docreader_fuzz() -> PathBuf {
    project_root().join("services/docreader/fuzz")
}

/// Dockerfiles and the files their images need.
pub fn docker_dir() -> PathBuf {
    project_root().join("docker")
}

/// The app's configuration file (shipped in its image).
pub fn app_config() -> PathBuf {
    project_root().join("config/config.yaml")
}

/// The web UI's static files (served by the frontend image).
pub fn frontend() -> PathBuf {
    project_root().join("services/frontend")
}

/// The production compose file.
pub fn compose_file() -> PathBuf {
    project_root().join("docker-compose.yml")
}

/// The development compose file.
pub fn compose_dev_file() -> PathBuf {
    project_root().join("docker-compose.dev.yml")
}
