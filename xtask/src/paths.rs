//! Every path inside the repository, in one place; the operator's are `weknora_operator::paths`
//! (relative to the root xtask installs: this checkout). Commands never spell paths themselves.

use std::path::{Path, PathBuf};

pub use weknora_operator::paths::app_config;

/// The repository root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Where `cargo xtask bench` writes its generated corpus.
pub fn bench_corpus() -> PathBuf {
    project_root().join("target/bench-corpus")
}

/// Dockerfiles and the files their images need.
pub fn docker_dir() -> PathBuf {
    project_root().join("docker")
}

/// The web UI's static files (served by the frontend image).
pub fn frontend() -> PathBuf {
    project_root().join("services/frontend")
}

/// Where `cargo xtask dist` writes release bundles.
pub fn dist() -> PathBuf {
    project_root().join("target/dist")
}

/// The pinned Rust toolchain.
pub fn rust_toolchain() -> PathBuf {
    project_root().join("rust-toolchain.toml")
}

/// The docreader benchmark's Python requirements (what `doctor --fix --dev` installs).
pub fn docreader_bench() -> PathBuf {
    project_root().join("services/docreader/bench")
}

/// The Python tools the tests run (compose-lint), pinned.
pub fn dev_python_requirements() -> PathBuf {
    project_root().join("xtask/requirements.txt")
}
