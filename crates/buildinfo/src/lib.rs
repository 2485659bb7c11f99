//! What a binary knows about its own build: printed by `--version`, served by the app's
//! `/api/v1/system/info`, and identical to the image's OCI labels.
//!
//! Architecture invariants: the facts are fixed at compile time (`build.rs` reads what the
//! image build sets, `WEKNORA_VERSION`/`_COMMIT`/`_BUILD_TIME`, and rustc's version), never
//! read from the runtime environment, so two builds of one commit answer the same; and the
//! crate depends on nothing of weknora's, so every binary can carry it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    /// Full commit hash, with a `-dirty` suffix for uncommitted changes; "unknown" outside image builds.
    pub commit: &'static str,
    /// Build time in RFC 3339 (the commit time, as in the image's `created` label); empty when not set.
    pub build_time: &'static str,
    pub toolchain: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("WEKNORA_BUILD_VERSION"),
    commit: env!("WEKNORA_BUILD_COMMIT"),
    build_time: env!("WEKNORA_BUILD_TIME"),
    toolchain: env!("WEKNORA_BUILD_TOOLCHAIN"),
};

impl BuildInfo {
    /// One line for `--version`: `weknora-app 0.1.0 (commit abc123, built 2026-11-25T21:14:41Z, rustc 1.95.0 ...)`.
    pub fn line(&self, binary: &str) -> String {
        let built = if self.build_time.is_empty() { "unknown" } else { self.build_time };
        format!("{binary} {} (commit {}, built {built}, {})", self.version, self.commit, self.toolchain)
    }
}
