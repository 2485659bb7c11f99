//! The developer's rows of `cargo xtask doctor --dev`, after the stack's: toolchain, arm64
//! builds, test servers, dev tools. Pure functions of the facts.

use weknora_operator::report::{Check, Status, check};

use super::probe::{COMPOSE_LINT_VERSION, DevFacts, SQLX_CLI_VERSION};

/// The fix of what only building and testing need.
const FIX_DEV: &str = "cargo xtask doctor --fix --dev";

/// The developer's rows.
pub fn evaluate(d: &DevFacts) -> Vec<Check> {
    vec![toolchain(d), arm64(d), test_servers(d), dev_tools(d)]
}

fn toolchain(f: &DevFacts) -> Check {
    let t = &f.toolchain;
    let (id, name) = ("toolchain", "Rust toolchain");
    let expected = format!("rustc {} ", t.pinned);
    match &t.active {
        None => check(
            id,
            name,
            Status::Fail,
            "rustc not found",
            Some("install rustup (https://rustup.rs); it reads rust-toolchain.toml"),
        ),
        Some(v) if !v.starts_with(&expected) => check(
            id,
            name,
            Status::Fail,
            format!("{v}, but rust-toolchain.toml pins {}", t.pinned),
            Some("unset RUSTUP_TOOLCHAIN and any `rustup override`; rustup then follows rust-toolchain.toml"),
        ),
        Some(v) if !t.components_missing.is_empty() => check(
            id,
            name,
            Status::Fail,
            format!("{v}; missing components: {}", t.components_missing.join(", ")),
            Some(FIX_DEV),
        ),
        Some(v) => check(id, name, Status::Ok, v.clone(), None),
    }
}

/// What is missing for building and running linux/arm64 images, in words.
pub fn arm64_missing(f: &DevFacts) -> Vec<&'static str> {
    let a = &f.arm64;
    let t = &f.toolchain;
    let mut missing = Vec::new();
    let aarch64 = "aarch64-unknown-linux-gnu";
    if t.targets_wanted.iter().any(|w| w == aarch64) && !t.targets_installed.iter().any(|i| i == aarch64) {
        missing.push("rust target aarch64-unknown-linux-gnu");
    }
    if !a.cross_gcc {
        missing.push("aarch64-linux-gnu-gcc");
    }
    if !a.cross_libc {
        missing.push("arm64 C library (libc6-dev-arm64-cross)");
    }
    if !a.qemu_static {
        missing.push("qemu-aarch64-static");
    }
    if !a.binfmt_enabled {
        missing.push("qemu-aarch64 binfmt handler");
    }
    missing
}

fn arm64(f: &DevFacts) -> Check {
    let missing = arm64_missing(f);
    if missing.is_empty() {
        check("arm64", "arm64 builds", Status::Ok, "cross target, cross gcc, qemu binfmt (F flag) ready", None)
    } else {
        // Optional: only `build-images --platform linux/arm64` needs it.
        check("arm64", "arm64 builds", Status::Warn, format!("missing: {}", missing.join(", ")), Some(FIX_DEV))
    }
}

fn test_servers(f: &DevFacts) -> Check {
    let (id, name) = ("test-servers", "test servers");
    let mut missing = Vec::new();
    if f.postgres_server.is_none() {
        missing.push("a PostgreSQL server package");
    }
    if !f.redis_server {
        missing.push("redis-server");
    }
    if !f.registry {
        missing.push("docker-registry");
    }
    if !f.browser {
        missing.push("chromium, chromium-driver, fonts-wqy-microhei");
    }
    // Only the tests need them; the stack runs its own in containers.
    match (f.postgres_server, missing.is_empty()) {
        (Some(v), true) => check(
            id,
            name,
            Status::Ok,
            format!("PostgreSQL {v}, redis-server, docker-registry, Chromium (the tests start throwaway servers)"),
            None,
        ),
        _ => check(
            id,
            name,
            Status::Warn,
            format!("missing {}: the tests that start them cannot run", missing.join(", ")),
            Some(FIX_DEV),
        ),
    }
}

/// Whether the pinned compose-lint is installed.
pub fn compose_lint_ok(d: &DevFacts) -> bool {
    d.compose_lint.as_deref() == Some(&format!("compose-lint {COMPOSE_LINT_VERSION}"))
}

fn dev_tools(f: &DevFacts) -> Check {
    let (id, name) = ("dev-tools", "dev tools");
    let mut missing = Vec::new();
    if !f.debootstrap {
        missing.push("debootstrap (builds the Debian base image where no registry is reachable)".to_string());
    }
    match &f.sqlx_cli {
        Some(v) if v.ends_with(SQLX_CLI_VERSION) => {}
        Some(v) => missing.push(format!("sqlx-cli {SQLX_CLI_VERSION} (found {v})")),
        None => missing.push(format!("sqlx-cli {SQLX_CLI_VERSION} (`sqlx migrate`, tested against our migrations)")),
    }
    if !f.nix {
        missing.push("Nix (nix-bin: the tests parse and evaluate the flake)".into());
    }
    if !f.bench_python {
        missing.push(
            "the Python reference parsers of `cargo xtask bench` (services/docreader/bench/requirements.txt)".into(),
        );
    }
    if !compose_lint_ok(f) {
        missing.push(format!("compose-lint {COMPOSE_LINT_VERSION} (lints the compose files)"));
    }
    if f.kubectl_minor.is_none_or(|m| m < 21) {
        // Debian's kubernetes-client is 1.20, too old: nothing here installs a newer one.
        missing.push(
            "kubectl 1.21 or later (renders the Kubernetes manifests: https://kubernetes.io/docs/tasks/tools/)".into(),
        );
    }
    if missing.is_empty() {
        check(
            id,
            name,
            Status::Ok,
            format!("debootstrap, sqlx-cli {SQLX_CLI_VERSION}, Nix, bench parsers, compose-lint, kubectl"),
            None,
        )
    } else {
        check(id, name, Status::Warn, format!("missing: {}", missing.join("; ")), Some(FIX_DEV))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::doctor::probe::{Arm64Fact, ToolchainFact};

    /// A developer's machine where everything is in place.
    pub fn healthy() -> DevFacts {
        DevFacts {
            compose_v1: true,
            toolchain: ToolchainFact {
                pinned: "1.95.0".into(),
                active: Some("rustc 1.95.0 (59807616e 2026-04-14)".into()),
                components_missing: vec![],
                targets_wanted: vec!["x86_64-unknown-linux-gnu".into(), "aarch64-unknown-linux-gnu".into()],
                targets_installed: vec!["x86_64-unknown-linux-gnu".into(), "aarch64-unknown-linux-gnu".into()],
                rustup: true,
            },
            arm64: Arm64Fact {
                cross_gcc: true,
                cross_libc: true,
                qemu_static: true,
                update_binfmts: true,
                binfmt_mounted: true,
                binfmt_enabled: true,
            },
            postgres_server: Some(15),
            redis_server: true,
            registry: true,
            browser: true,
            debootstrap: true,
            nix: true,
            sqlx_cli: Some(format!("sqlx-cli {SQLX_CLI_VERSION}")),
            bench_python: true,
            compose_lint: Some(format!("compose-lint {COMPOSE_LINT_VERSION}")),
            kubectl_minor: Some(32),
        }
    }

    /// A fresh machine of this project's kind: no compose v1, no arm64 tools or target.
    pub fn fresh() -> DevFacts {
        let mut d = healthy();
        d.compose_v1 = false;
        d.toolchain.targets_installed = vec!["x86_64-unknown-linux-gnu".into()];
        d.arm64 = Arm64Fact {
            cross_gcc: false,
            cross_libc: false,
            qemu_static: false,
            update_binfmts: false,
            binfmt_mounted: true,
            binfmt_enabled: false,
        };
        d
    }

    fn status_of(d: &DevFacts, id: &str) -> Status {
        evaluate(d).into_iter().find(|c| c.id == id).unwrap().status
    }

    #[test]
    fn a_healthy_machine_passes_every_check() {
        let checks = evaluate(&healthy());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    }

    #[test]
    fn a_fresh_machine_only_warns_on_arm64() {
        assert_eq!(status_of(&fresh(), "arm64"), Status::Warn);
    }

    #[test]
    fn missing_test_servers_only_warn() {
        let mut d = healthy();
        d.postgres_server = None;
        assert_eq!(status_of(&d, "test-servers"), Status::Warn);
        let mut d = healthy();
        d.redis_server = false;
        assert_eq!(status_of(&d, "test-servers"), Status::Warn);
        let mut d = healthy();
        d.registry = false;
        let c = evaluate(&d).into_iter().find(|c| c.id == "test-servers").unwrap();
        assert!(c.status == Status::Warn && c.detail.contains("docker-registry"), "{}", c.detail);
        let mut d = healthy();
        d.browser = false;
        let c = evaluate(&d).into_iter().find(|c| c.id == "test-servers").unwrap();
        assert!(c.status == Status::Warn && c.detail.contains("chromium-driver"), "{}", c.detail);
    }

    #[test]
    fn a_missing_or_different_sqlx_cli_only_warns() {
        let mut d = healthy();
        d.sqlx_cli = Some("sqlx-cli 0.8.6".into());
        assert_eq!(status_of(&d, "dev-tools"), Status::Warn);
        d.sqlx_cli = None;
        d.debootstrap = false;
        let c = evaluate(&d).into_iter().find(|c| c.id == "dev-tools").unwrap();
        assert!(c.detail.contains("debootstrap") && c.detail.contains("sqlx-cli"), "{}", c.detail);
    }

    #[test]
    fn a_wrong_toolchain_fails() {
        let mut d = healthy();
        d.toolchain.active = Some("rustc 1.96.0-nightly (abc 2026-05-01)".into());
        assert_eq!(status_of(&d, "toolchain"), Status::Fail);
        let mut d = healthy();
        d.toolchain.components_missing = vec!["clippy".into()];
        assert_eq!(status_of(&d, "toolchain"), Status::Fail);
    }
}
