//! Every path inside the repository, in one place. Commands never spell paths themselves.

use std::path::{Path, PathBuf};

/// The repository root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// The operator's configuration for the stack (never committed).
pub fn env_file() -> PathBuf {
    project_root().join(".env")
}

/// The documented template `.env` is checked against.
pub fn env_example() -> PathBuf {
    project_root().join(".env.example")
}

/// The pinned Rust toolchain.
pub fn rust_toolchain() -> PathBuf {
    project_root().join("rust-toolchain.toml")
}

/// sqlx migrations: `<YYYYMMDDHHMMSS>_<name>.up.sql` and `.down.sql`.
pub fn migrations() -> PathBuf {
    project_root().join("migrations")
}
