//! xtask's own test helper; the servers come from weknora-testkit.

#![allow(dead_code, unused_imports)]

use std::process::Command;

pub use weknora_testkit::{PASSWORD, Pg};

/// `cargo xtask <args>` with extra environment; returns (success, stdout, stderr).
pub fn xtask(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running xtask");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker <args>`, which must succeed; its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("running docker");
    assert!(
        out.status.success(),
        "docker {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host's address on Docker's default bridge, where a server the test runs on the host
/// is reachable from containers (the operator's own reading of it).
pub fn docker_host_address() -> std::net::IpAddr {
    let found = weknora_operator::host::runtime().unwrap().block_on(async {
        let docker = weknora_operator::docker::connect().await?;
        weknora_operator::docker::bridge_address(&docker).await
    });
    found.unwrap_or_else(|e| panic!("{e:#}")).into()
}

/// `docker build -t <tag> -` of `dockerfile`, given on stdin (no context), which must succeed.
pub fn docker_build(tag: &str, dockerfile: &str) {
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running docker build");
    std::io::Write::write_all(&mut build.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(out.status.success(), "building {tag}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `docker compose config` of `files` and `profiles`, as JSON, with compose's defaults (no
/// .env; the required secrets set to stand-ins). Needs the compose CLI, not an engine.
pub fn compose_config(files: &[&str], profiles: &[&str]) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("docker");
    cmd.args(["compose", "-p", "weknora-test", "--env-file"]).arg(empty.path());
    for f in files {
        cmd.args(["-f", f]);
    }
    for profile in profiles {
        cmd.args(["--profile", profile]);
    }
    let out = cmd
        .args(["config", "--format", "json"])
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs([
            ("WEKNORA_VERSION", env!("CARGO_PKG_VERSION")),
            ("DB_PASSWORD", "stand-in"),
            ("REDIS_PASSWORD", "stand-in"),
            ("ADMIN_API_KEY", "stand-in"),
        ])
        .output()
        .expect("running docker compose (`cargo xtask doctor --fix` installs it)");
    assert!(out.status.success(), "docker compose config: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
