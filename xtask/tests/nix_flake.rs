//! The Nix flake, checked as far as a machine without nixpkgs can: every `.nix` file parses
//! and names only files git tracks; the image definitions (nix/services.nix) declare what
//! docker/Dockerfile.* declare; and, from git mirrors of the flake's inputs
//! (`WEKNORA_NIX_MIRRORS`, see docs/operations.md "Nix"; CI needs them), the lock's hashes are
//! those of the locked revisions and the outputs have the expected shape.
//!
//! Needs Nix (`cargo xtask doctor --fix` installs Debian's nix-bin).

mod support;

use std::collections::{BTreeMap, BTreeSet};
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
    assert!(files.len() >= 7 && files.contains(&"flake.nix".to_string()), "the flake's files: {files:?}");
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
    for expected in ["rust-toolchain.toml", "nix/services.nix", "config/config.yaml", "docker/nginx/entrypoint.sh"] {
        assert!(all.iter().any(|p| p == expected), "the scan missed {expected}: {all:?}");
    }
}

/// What one Dockerfile declares, in the image config's terms.
#[derive(Debug, Default)]
struct Declared {
    entrypoint: Value,
    cmd: Value,
    user: String,
    ports: Vec<String>,
    workdir: String,
    env: BTreeMap<String, String>,
    healthcheck: Value,
    labels: BTreeMap<String, String>,
}

/// Splits `k=v k2="v 2"` into pairs (the forms our Dockerfiles use).
fn pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or_else(|| panic!("not key=value: {rest}"));
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = next.trim();
    }
    out
}

fn nanoseconds(duration: &str) -> u64 {
    duration.strip_suffix('s').and_then(|s| s.parse::<u64>().ok()).unwrap() * 1_000_000_000
}

fn parse_dockerfile(text: &str) -> Declared {
    let mut d = Declared { workdir: "/".into(), cmd: Value::Null, ..Default::default() };
    let joined =
        text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n").replace("\\\n", " ");
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args = args.trim();
        match instruction {
            "ENTRYPOINT" => d.entrypoint = serde_json::from_str(args).unwrap(),
            "CMD" => d.cmd = serde_json::from_str(args).unwrap(),
            "USER" => d.user = args.to_string(),
            "WORKDIR" => d.workdir = args.to_string(),
            "EXPOSE" => d.ports.extend(
                args.split_whitespace().map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") }),
            ),
            "ENV" => d.env.extend(pairs(args)),
            "LABEL" => d.labels.extend(pairs(args)),
            "HEALTHCHECK" => {
                let (options, command) = args.split_once("CMD ").unwrap();
                let mut check = json!({ "Test": ["CMD"] });
                let test = check["Test"].as_array_mut().unwrap();
                test.extend(serde_json::from_str::<Vec<Value>>(command).unwrap());
                for option in options.split_whitespace() {
                    let (name, value) = option.trim_start_matches("--").split_once('=').unwrap();
                    let (key, v) = match name {
                        "interval" => ("Interval", json!(nanoseconds(value))),
                        "timeout" => ("Timeout", json!(nanoseconds(value))),
                        "start-period" => ("StartPeriod", json!(nanoseconds(value))),
                        "retries" => ("Retries", json!(value.parse::<u64>().unwrap())),
                        other => panic!("unknown HEALTHCHECK option {other}"),
                    };
                    check[key] = v;
                }
                d.healthcheck = check;
            }
            _ => {}
        }
    }
    d
}

#[test]
fn nix_images_declare_what_the_dockerfiles_declare() {
    let services: Value =
        serde_json::from_str(&run("nix-instantiate", &["--eval", "--strict", "--json", "nix/services.nix"], &root()))
            .unwrap();
    let names: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(names, ["app", "docreader", "frontend"]);
    for (name, spec) in services.as_object().unwrap() {
        let dockerfile = root().join(format!("docker/Dockerfile.{name}"));
        let d = parse_dockerfile(&std::fs::read_to_string(&dockerfile).unwrap());
        let what = |field: &str| format!("{name}: nix/services.nix and {} differ in {field}", dockerfile.display());
        assert_eq!(spec["entrypoint"], d.entrypoint, "{}", what("the entrypoint"));
        assert_eq!(spec["cmd"], d.cmd, "{}", what("the command"));
        assert_eq!(spec["user"], d.user.as_str(), "{}", what("the user"));
        assert_eq!(spec["ports"], json!(d.ports), "{}", what("the exposed ports"));
        assert_eq!(spec["workdir"], d.workdir.as_str(), "{}", what("the working folder"));
        assert_eq!(spec["env"], json!(d.env), "{}", what("the environment"));
        assert_eq!(spec["healthcheck"], d.healthcheck, "{}", what("the healthcheck"));
        let keys: BTreeSet<&str> = d.labels.keys().map(String::as_str).collect();
        let nix_keys: BTreeSet<&str> =
            spec["labelKeys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(nix_keys, keys, "{}", what("the label keys"));
        assert_eq!(spec["title"], d.labels["org.opencontainers.image.title"].as_str(), "{}", what("the title"));
        assert_eq!(
            spec["description"],
            d.labels["org.opencontainers.image.description"].as_str(),
            "{}",
            what("the description")
        );
    }
}

#[test]
fn the_dockerfile_reader_sees_a_drift() {
    let original = std::fs::read_to_string(root().join("docker/Dockerfile.app")).unwrap();
    let d = parse_dockerfile(&original);
    assert_eq!(d.user, "65532:65532");
    assert_eq!(d.ports, ["8080/tcp"]);
    assert_eq!(d.healthcheck["StartPeriod"], 30_000_000_000u64);
    let drifted =
        parse_dockerfile(&original.replace("EXPOSE 8080", "EXPOSE 9090").replace("USER 65532:65532", "USER 0"));
    assert_eq!((drifted.user.as_str(), drifted.ports), ("0", vec!["9090/tcp".to_string()]));
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
