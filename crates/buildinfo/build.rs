//! Captures build metadata as compile-time environment variables. Image builds set
//! WEKNORA_VERSION, WEKNORA_COMMIT and SOURCE_DATE_EPOCH (the commit time, so two builds of
//! one commit are identical); a plain `cargo build` gets the workspace version and "unknown".

use std::process::Command;

fn main() {
    for var in ["WEKNORA_VERSION", "WEKNORA_COMMIT", "SOURCE_DATE_EPOCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let version = std::env::var("WEKNORA_VERSION").unwrap_or_else(|_| std::env::var("CARGO_PKG_VERSION").unwrap());
    let commit = std::env::var("WEKNORA_COMMIT").unwrap_or_else(|_| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let toolchain = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WEKNORA_BUILD_VERSION={version}");
    println!("cargo:rustc-env=WEKNORA_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=WEKNORA_BUILD_EPOCH={epoch}");
    println!("cargo:rustc-env=WEKNORA_BUILD_TOOLCHAIN={toolchain}");
}
