//! The Nix flake, checked as far as a machine without nixpkgs can: every `.nix` file parses
//! and names only files git tracks; the image declarations (nix/services.json, generated
//! from the stack spec like docker/Dockerfile.*'s tails) evaluate; and, from git mirrors of
//! the flake's inputs (`WEKNORA_NIX_MIRRORS`, see docs/operations.md "Nix"), the lock's hashes are
//! those of the locked revisions and the outputs have the expected shape.
//!
//! Needs Nix (`cargo xtask doctor --fix` installs Debian's nix-bin).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use weknora_testkit::{Need, require};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (cargo xtask doctor --fix installs it)"));
    assert!(out.status.success(), "{program} {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tracked() -> BTreeSet<String> {
    run("git", &["ls-files"], &root()).lines().map(String::from).collect()
}

fn nix_files() -> Vec<String> {
    let files: Vec<String> = tracked().into_iter().filter(|f| f.ends_with(".nix")).collect();
    assert!(files.len() >= 6 && files.contains(&"flake.nix".to_string()), "the flake's files: {files:?}");
    files
}

#[test]
fn every_nix_file_parses() {
    require!(Need::NixInstantiate);
    for file in nix_files() {
        run("nix-instantiate", &["--parse", &file], &root());
    }
}

/// The paths a Nix file names, relative to the repository: `./x` and `../x` literals
/// (relative to the file) and `root + "/x"` / `self + "/x"` (relative to the repository).
fn referenced_paths(file: &str, text: &str) -> Vec<String> {
    let dir = Path::new(file).parent().unwrap();
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split(" # ").next().unwrap();
        if code.trim_start().starts_with('#') {
            continue;
        }
        for anchor in ["root + \"", "self + \""] {
            for (i, _) in code.match_indices(anchor) {
                let rest = &code[i + anchor.len()..];
                let path = &rest[..rest.find('"').unwrap()];
                found.push(path.trim_start_matches('/').to_string());
            }
        }
        let bytes = code.as_bytes();
        for (i, _) in code.match_indices("./") {
            let start = if i > 0 && bytes[i - 1] == b'.' { i - 1 } else { i };
            if start > 0 && !matches!(bytes[start - 1], b' ' | b'(' | b'[' | b'=') {
                continue; // inside a word or a string, not a path literal
            }
            let literal: String = code[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-' | '+'))
                .collect();
            let mut path = dir.to_path_buf();
            for part in literal.split('/') {
                match part {
                    "." | "" => {}
                    ".." => {
                        path.pop();
                    }
                    p => path.push(p),
                }
            }
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn nix_files_name_only_files_that_git_tracks() {
    let tracked = tracked();
    let mut all = Vec::new();
    for file in nix_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for path in referenced_paths(&file, &text) {
            let ok = path.is_empty()
                || tracked.contains(&path)
                || tracked.iter().any(|t| t.starts_with(&format!("{path}/")));
            assert!(ok, "{file} names `{path}`, which git does not track (a flake sees only tracked files)");
            all.push(path);
        }
    }
    // The scan sees what the files really name (so an empty scan cannot pass).
    for expected in ["rust-toolchain.toml", "nix/services.json", "config/config.yaml", "docker/nginx/entrypoint.sh"] {
        assert!(all.iter().any(|p| p == expected), "the scan missed {expected}: {all:?}");
    }
}

/// nix/services.json (written by `cargo xtask codegen` from the stack spec, whose plain
/// test keeps it fresh) is what the flake reads: Nix evaluates it to our three images.
#[test]
fn nix_reads_the_generated_service_declarations() {
    let expr = "builtins.fromJSON (builtins.readFile ./nix/services.json)";
    let services: Value =
        serde_json::from_str(&run("nix-instantiate", &["--eval", "--strict", "--json", "--expr", expr], &root()))
            .unwrap();
    let names: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(names, ["app", "docreader", "frontend"]);
    assert_eq!(services["app"]["user"], "65532:65532");
    assert_eq!(services["frontend"]["healthcheck"]["StartPeriod"], 10_000_000_000u64);
}

/// The tree of `rev` from a bare git mirror, in a temporary folder.
fn checkout(mirror: &Path, rev: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let archive = Command::new("git").args(["archive", rev]).current_dir(mirror).output().unwrap();
    assert!(archive.status.success(), "git archive {rev} in {}", mirror.display());
    let mut tar =
        Command::new("tar").args(["-x", "-C"]).arg(dir.path()).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &archive.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    dir
}

const NIX: &[&str] = &["--extra-experimental-features", "nix-command flakes"];

#[test]
fn the_lock_is_genuine_and_the_outputs_have_their_shape() {
    require!(Need::Nix, Need::NixInputMirrors);
    let mirrors = PathBuf::from(std::env::var_os("WEKNORA_NIX_MIRRORS").unwrap());
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(root().join("flake.lock")).unwrap()).unwrap();
    let mirror = |owner_repo: &str| mirrors.join(owner_repo.replace('/', "+")).join("repo");
    let mut overrides = Vec::new();
    let mut trees = Vec::new();
    for input in ["crane", "rust-overlay"] {
        let locked = &lock["nodes"][input]["locked"];
        let repo = format!("{}/{}", locked["owner"].as_str().unwrap(), locked["repo"].as_str().unwrap());
        let tree = checkout(&mirror(&repo), locked["rev"].as_str().unwrap());
        let mut args = NIX.to_vec();
        args.extend(["hash", "path", "--type", "sha256"]);
        let path = tree.path().display().to_string();
        args.push(&path);
        let hash = run("nix", &args, &root());
        assert_eq!(hash.trim(), locked["narHash"], "flake.lock's narHash of {input} is not that of {repo} at its rev");
        overrides.extend(["--override-input".to_string(), input.to_string(), format!("path:{path}")]);
        trees.push(tree);
    }
    // nixpkgs itself is too big to mirror: its library (the same `lib`) stands in, which is
    // all the outputs' shape needs.
    let lib = checkout(&mirror("nix-community/nixpkgs.lib"), "HEAD");
    overrides.extend(["--override-input".into(), "nixpkgs".into(), format!("path:{}", lib.path().display())]);
    let names = |output: &str| -> Value {
        let mut args: Vec<String> = NIX.iter().map(|s| s.to_string()).collect();
        args.extend(["eval", "--json", "--no-write-lock-file", &format!(".#{output}")].map(String::from));
        args.extend(["--apply", "builtins.mapAttrs (system: attrs: builtins.attrNames attrs)"].map(String::from));
        args.extend(overrides.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&run("nix", &args, &root())).unwrap()
    };
    let both = |attrs: Value| json!({ "aarch64-linux": attrs, "x86_64-linux": attrs });
    assert_eq!(
        names("packages"),
        both(json!([
            "app",
            "app-image",
            "default",
            "docreader",
            "docreader-image",
            "frontend",
            "frontend-image",
            "weknora"
        ]))
    );
    assert_eq!(names("checks"), both(json!(["app", "clippy", "docreader", "fmt", "tests"])));
    assert_eq!(names("devShells"), both(json!(["default"])));
    let mut args = NIX.to_vec();
    args.extend(["eval", "--json", "--no-write-lock-file", ".#formatter", "--apply", "builtins.attrNames"]);
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    args.extend(overrides);
    assert_eq!(run("nix", &args, &root()).trim(), r#"["aarch64-linux","x86_64-linux"]"#);
}

#[test]
fn build_images_with_nix_names_what_is_missing() {
    let xtask = |path: &str| {
        let (ok, _, err) = support::xtask(&["build-images", "--nix", "--app"], &[("PATH".into(), path.into())]);
        assert!(!ok);
        err
    };
    let empty = tempfile::tempdir().unwrap();
    let err = xtask(&empty.path().display().to_string());
    assert!(err.contains("Nix is not installed") && err.contains("leave out --nix"), "{err}");
    // A Nix older than the pinned nixpkgs accepts (Debian bookworm's 2.8), whatever this
    // machine has.
    let old = tempfile::tempdir().unwrap();
    let nix = old.path().join("nix");
    std::fs::write(&nix, "#!/bin/sh\necho 'nix (Nix) 2.8.0'\n").unwrap();
    std::fs::set_permissions(&nix, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = xtask(&old.path().display().to_string());
    assert!(err.contains("nix (Nix) 2.8.0 is too old for the flake") && err.contains("2.18"), "{err}");
}
