//! Captures build metadata as compile-time environment variables. Image builds
//! (`cargo xtask build-images`) set WEKNORA_VERSION, WEKNORA_COMMIT and WEKNORA_BUILD_TIME
//! (the commit time in RFC 3339, so two builds of one commit are identical); a plain
//! `cargo build` gets the workspace version and "unknown".

use std::process::Command;

fn main() {
    for var in ["WEKNORA_VERSION", "WEKNORA_COMMIT", "WEKNORA_BUILD_TIME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let version = var("WEKNORA_VERSION").unwrap_or_else(|| var("CARGO_PKG_VERSION").unwrap());
    let commit = var("WEKNORA_COMMIT").unwrap_or_else(|| "unknown".into());
    let built = var("WEKNORA_BUILD_TIME").unwrap_or_default();
    let rustc = var("RUSTC").unwrap_or_else(|| "rustc".into());
    let toolchain = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WEKNORA_BUILD_VERSION={version}");
    println!("cargo:rustc-env=WEKNORA_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=WEKNORA_BUILD_TIME={built}");
    println!("cargo:rustc-env=WEKNORA_BUILD_TOOLCHAIN={toolchain}");
}
