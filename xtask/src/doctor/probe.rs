//! The developer's facts `cargo xtask doctor --dev` and `ci` judge beside the stack's:
//! toolchains, cross compilers, test servers and tools. Only observation here.

use std::fs;
use std::path::Path;

use weknora_operator::docker;
use weknora_operator::process::{on_path, stdout_of};

use crate::paths;

/// The Python modules the docreader benchmark's reference.py and make_corpus.py import
/// (`doctor --fix --dev` installs them).
pub const PYTHON_MODULES: &str =
    "pypdf, docx, openpyxl, xlrd, xlwt, odf, pptx, fpdf, ebooklib, bs4, lxml, charset_normalizer, PIL";

/// compose-lint, the security linter the tests run over both compose files
/// (xtask/requirements.txt pins the same version; `doctor --fix --dev` installs it).
pub const COMPOSE_LINT_VERSION: &str = "0.36.2";

/// The sqlx-cli version the migrations are tested against.
pub const SQLX_CLI_VERSION: &str = "0.9.0";

#[derive(Debug)]
pub struct ToolchainFact {
    pub pinned: String,
    pub active: Option<String>,
    pub components_missing: Vec<String>,
    pub targets_wanted: Vec<String>,
    pub targets_installed: Vec<String>,
    pub rustup: bool,
}

#[derive(Debug)]
pub struct Arm64Fact {
    pub cross_gcc: bool,
    pub cross_libc: bool,
    pub qemu_static: bool,
    pub update_binfmts: bool,
    pub binfmt_mounted: bool,
    /// The qemu-aarch64 handler is registered, enabled, and with the F flag (so it works
    /// inside containers, where the interpreter's path does not exist).
    pub binfmt_enabled: bool,
}

/// The developer's machine: toolchains, cross compilers, test servers and tools.
#[derive(Debug)]
pub struct DevFacts {
    /// The standalone compose v1, for the test that runs the stack with it.
    pub compose_v1: bool,
    pub toolchain: ToolchainFact,
    pub arm64: Arm64Fact,
    /// The newest PostgreSQL server version installed from packages (the tests start one).
    pub postgres_server: Option<u32>,
    /// redis-server, for the tests that need a real Redis.
    pub redis_server: bool,
    /// docker-registry (Distribution), the local registry the image push tests push to.
    pub registry: bool,
    /// Chromium, its WebDriver and a CJK font: the browser test of the web interface.
    pub browser: bool,
    /// debootstrap makes the Debian base image where no registry is reachable.
    pub debootstrap: bool,
    /// nix-instantiate, which the tests use to parse and evaluate the flake's files.
    pub nix: bool,
    /// `sqlx --version`, e.g. "sqlx-cli 0.9.0".
    pub sqlx_cli: Option<String>,
    /// The Python writer and reference parsers the docreader fixtures and benchmark use.
    pub bench_python: bool,
    /// `compose-lint --version` through python3, if it is installed.
    pub compose_lint: Option<String>,
    /// kubectl's minor version: 21 and later render the Kubernetes manifests' components.
    pub kubectl_minor: Option<u32>,
}

/// The font fonts-wqy-microhei installs, so that screenshots show Chinese text.
const CJK_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

/// Gathers the developer's facts.
pub fn gather() -> DevFacts {
    DevFacts {
        compose_v1: stdout_of("docker-compose", &["version"])
            .and_then(|out| docker::parse_compose_version(&out))
            .is_some_and(|v| v.starts_with("1.")),
        toolchain: toolchain(),
        arm64: arm64(),
        postgres_server: postgres_server(),
        redis_server: on_path("redis-server"),
        registry: on_path("docker-registry"),
        browser: on_path("chromium") && on_path("chromedriver") && Path::new(CJK_FONT).exists(),
        debootstrap: on_path("debootstrap") || Path::new("/usr/sbin/debootstrap").exists(),
        nix: on_path("nix-instantiate"),
        sqlx_cli: stdout_of("sqlx", &["--version"]),
        bench_python: stdout_of("python3", &["-c", &format!("import {PYTHON_MODULES}")]).is_some(),
        compose_lint: stdout_of("python3", &["-m", "compose_lint", "--version"]),
        kubectl_minor: stdout_of("kubectl", &["version", "--client", "-o", "json"]).and_then(|json| {
            let v: serde_json::Value = serde_json::from_str(&json).ok()?;
            v["clientVersion"]["minor"].as_str()?.trim_end_matches('+').parse().ok()
        }),
    }
}

/// Reads `channel` and `targets` out of rust-toolchain.toml.
pub fn parse_toolchain_file(text: &str) -> (String, Vec<String>, Vec<String>) {
    let mut channel = String::new();
    let mut components = Vec::new();
    let mut targets = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let strings = || value.split('"').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>();
        match key.trim() {
            "channel" => channel = strings().into_iter().next().unwrap_or_default(),
            "components" => components = strings(),
            "targets" => targets = strings(),
            _ => {}
        }
    }
    (channel, components, targets)
}

fn toolchain() -> ToolchainFact {
    let text = fs::read_to_string(paths::rust_toolchain()).unwrap_or_default();
    let (pinned, components, targets_wanted) = parse_toolchain_file(&text);
    let rustup = on_path("rustup");
    let lines = |args: &[&str]| {
        stdout_of("rustup", args)
            .map(|o| o.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let targets_installed = if rustup { lines(&["target", "list", "--installed"]) } else { Vec::new() };
    let components_installed = if rustup { lines(&["component", "list", "--installed"]) } else { Vec::new() };
    let components_missing = if rustup {
        components
            .into_iter()
            .filter(|c| !components_installed.iter().any(|i| i == c || i.starts_with(&format!("{c}-"))))
            .collect()
    } else {
        Vec::new()
    };
    ToolchainFact {
        pinned,
        active: stdout_of("rustc", &["--version"]),
        components_missing,
        targets_wanted,
        targets_installed,
        rustup,
    }
}

fn postgres_server() -> Option<u32> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("bin/initdb").exists())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .max()
}

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

fn arm64() -> Arm64Fact {
    let handler = fs::read_to_string(Path::new(BINFMT_DIR).join("qemu-aarch64")).unwrap_or_default();
    Arm64Fact {
        cross_gcc: on_path("aarch64-linux-gnu-gcc"),
        cross_libc: Path::new("/usr/aarch64-linux-gnu/lib/libc.a").exists(),
        qemu_static: on_path("qemu-aarch64-static"),
        update_binfmts: on_path("update-binfmts"),
        binfmt_mounted: Path::new(BINFMT_DIR).join("register").exists(),
        binfmt_enabled: binfmt_handler_usable(&handler),
    }
}

/// A registered handler reads `enabled` on its first line and lists its flags; containers
/// need `F` (the kernel opens the interpreter at registration time).
pub fn binfmt_handler_usable(handler: &str) -> bool {
    handler.lines().next() == Some("enabled")
        && handler.lines().any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_toolchain_file() {
        let (channel, components, targets) =
            parse_toolchain_file(&fs::read_to_string(paths::rust_toolchain()).unwrap());
        assert_eq!(channel, "1.95.0");
        assert_eq!(components, ["rustfmt", "clippy"]);
        assert!(targets.contains(&"aarch64-unknown-linux-gnu".to_string()));
    }

    #[test]
    fn binfmt_needs_enabled_and_the_fix_binary_flag() {
        let ok = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n";
        assert!(binfmt_handler_usable(ok));
        assert!(!binfmt_handler_usable(&ok.replace("POCF", "PO")));
        assert!(!binfmt_handler_usable(&ok.replace("enabled", "disabled")));
        assert!(!binfmt_handler_usable(""));
    }

    #[test]
    fn requirements_txt_pins_the_same_compose_lint() {
        let requirements = fs::read_to_string(paths::dev_python_requirements()).unwrap();
        assert!(requirements.contains(&format!("compose-lint=={COMPOSE_LINT_VERSION}")), "{requirements}");
    }
}
