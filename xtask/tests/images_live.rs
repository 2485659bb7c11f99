//! `cargo xtask build-images` end to end against the real Docker engine: every image is
//! built, runs and answers its healthcheck (arm64 under qemu); labels and `--version`
//! agree; the Dockerfiles build the same images with a plain `docker build`; a push to a
//! local registry yields one manifest list per tag with both platforms; `--clean` removes
//! what it should; a second build of the same commit, our crates compiled again from
//! nothing, gives the same image IDs.
//!
//! Needs what `cargo xtask doctor --fix` installs: the engine, qemu binfmt, the aarch64
//! cross linker, debootstrap and docker-registry. `cargo xtask ci` runs it.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{docker, xtask};
use weknora_testkit::{Need, require};
use weknora_testkit::{Phases, Registry};

const ADMIN_KEY: &str = "images-test-admin-key-0123456789";

fn inspect(image: &str) -> Value {
    serde_json::from_str::<Value>(&docker(&["image", "inspect", image])).unwrap()[0].clone()
}

/// Starts the image and waits for its own healthcheck to say healthy; removes it after.
fn assert_healthy(image: &str, platform: &str, env: &[&str]) {
    let mut args = vec!["run", "-d", "--platform", platform];
    for e in env {
        args.extend(["-e", e]);
    }
    args.push(image);
    let id = docker(&args);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = docker(&["inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", &id]);
        if status.ends_with(" healthy") || status.ends_with("unhealthy") || !status.starts_with("running") {
            break status;
        }
        if Instant::now() > deadline {
            break format!("{status} (after 120 s)");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let logs = Command::new("docker").args(["logs", "--tail", "20", &id]).output().unwrap();
    docker(&["rm", "-f", "-v", &id]);
    assert_eq!(
        status,
        "running healthy",
        "{image} ({platform}):\n{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
}

/// Paths, modes and owners of an image's files (what `docker export` of a container holds).
fn file_tree(image: &str) -> BTreeMap<String, (u32, u64, u64, u64)> {
    let id = docker(&["create", image]);
    let out = Command::new("docker").args(["export", &id]).output().unwrap();
    docker(&["rm", &id]);
    let mut tree = BTreeMap::new();
    for entry in tar::Archive::new(&out.stdout[..]).entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let path = entry.path().unwrap().display().to_string();
        tree.insert(path, (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), h.size().unwrap()));
    }
    tree
}

fn ours(built: &[Value]) -> Vec<&Value> {
    built.iter().filter(|b| b["image"] == "weknora/app" || b["image"] == "weknora/docreader").collect()
}

#[test]
fn images_build_run_push_clean_and_rebuild_identically() {
    require!(Need::DockerEngine, Need::StackTier, Need::Qemu, Need::Debootstrap, Need::DockerRegistry);
    let mut phases = Phases::start("images");
    // Build everything: our images for both platforms, the local third-party stand-ins.
    let (ok, out, err) =
        xtask(&["build-images", "--all", "--local-deps", "--platform", "linux/amd64,linux/arm64", "--json"], &[]);
    assert!(ok, "build-images failed:\n{err}");
    let built: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let platforms: Vec<(String, String)> = ours(&built)
        .iter()
        .map(|b| (b["image"].as_str().unwrap().into(), b["platform"].as_str().unwrap().into()))
        .collect();
    for image in ["weknora/app", "weknora/docreader"] {
        for platform in ["linux/amd64", "linux/arm64"] {
            assert!(platforms.contains(&(image.into(), platform.into())), "{image} {platform} missing: {out}");
        }
    }
    for dep in ["weknora/postgres-local", "weknora/redis-local", "weknora/nginx-local", "weknora/embedder-local"] {
        assert!(built.iter().any(|b| b["image"] == dep), "{dep} missing: {out}");
    }

    phases.done("build both platforms and the stand-ins");
    // Each runs and answers its healthcheck; labels and --version tell the same story.
    for b in ours(&built) {
        let image = b["tags"][0].as_str().unwrap();
        let platform = b["platform"].as_str().unwrap();
        assert_healthy(image, platform, &[&format!("ADMIN_API_KEY={ADMIN_KEY}")]);
        let labels = &inspect(image)["Config"]["Labels"];
        let label = |k: &str| labels[k].as_str().unwrap_or_else(|| panic!("{image}: no label {k}")).to_string();
        let oci = |k: &str| label(&format!("org.opencontainers.image.{k}"));
        let version = docker(&["run", "--rm", "--platform", platform, image, "--version"]);
        let expected = format!(
            "{} {} (commit {}, built {}, {})",
            oci("title"),
            oci("version"),
            oci("revision"),
            oci("created"),
            label("io.github.weknora.toolchain")
        );
        assert_eq!(version, expected, "{image} ({platform})");
        assert_eq!(inspect(image)["Architecture"], platform.trim_start_matches("linux/"));
        assert!(b["size_bytes"].as_i64().unwrap() < 30_000_000, "{image} is over 30 MB: {b}");
        assert!(image.contains(&oci("version")));
    }
    use weknora_stack_spec as spec;
    for (dep, env) in [
        (spec::POSTGRES_LOCAL, vec!["POSTGRES_PASSWORD=images-test"]),
        (spec::REDIS_LOCAL, vec![]),
        (spec::NGINX_LOCAL, vec![]),
        (spec::PROMETHEUS_LOCAL, vec![]),
        (spec::EMBEDDER_IMAGE, vec![]),
    ] {
        assert_healthy(dep, "linux/amd64", &env);
    }

    phases.done("every image healthy");
    // A build that fails mid-stream fails the command with the daemon's message, naming the image.
    let (ok, _, err) = xtask(&["build-images", "--local-deps", "--apt-mirror", "http://127.0.0.1:9/debian"], &[]);
    assert!(!ok, "a build with an unreachable APT mirror succeeded");
    assert!(err.contains("weknora/postgres-local:17") && err.contains("returned a non-zero code"), "{err}");

    phases.done("a failing build");
    // The Dockerfiles, built the plain way, give the same images (up to labels and mtimes).
    let contexts = tempfile::tempdir().unwrap();
    let dir = contexts.path().to_str().unwrap();
    let (ok, out, err) = xtask(&["build-images", "--all", "--platform", "linux/amd64", "--context-dir", dir], &[]);
    assert!(ok, "--context-dir failed:\n{err}");
    for (name, repo) in [("app", "weknora/app"), ("docreader", "weknora/docreader")] {
        let ctx = contexts.path().join(format!("{name}-amd64"));
        assert!(out.contains(ctx.to_str().unwrap()), "{out}");
        let plain = format!("weknora-test/{name}-plain:latest");
        docker(&["build", "-q", "-f", ctx.join("Dockerfile").to_str().unwrap(), "-t", &plain, ctx.to_str().unwrap()]);
        let ours = built.iter().find(|b| b["image"] == repo && b["platform"] == "linux/amd64").unwrap();
        let ours = ours["tags"][0].as_str().unwrap();
        let (a, b) = (inspect(ours), inspect(&plain));
        for key in ["User", "Entrypoint", "Cmd", "Env", "WorkingDir", "ExposedPorts", "Healthcheck"] {
            assert_eq!(a["Config"][key], b["Config"][key], "{name}: Config.{key} differs between xtask and Dockerfile");
        }
        assert_eq!(file_tree(ours), file_tree(&plain), "{name}: files differ between xtask and Dockerfile");
        assert_healthy(&plain, "linux/amd64", &[&format!("ADMIN_API_KEY={ADMIN_KEY}")]);
        docker(&["rmi", &plain]);
    }

    phases.done("the Dockerfiles built the plain way");
    // Push both platforms; the registry holds one manifest list per tag with both.
    let registry = Registry::start();
    let (ok, _, err) =
        xtask(&["build-images", "--all", "--platform", "linux/amd64,linux/arm64", "--push", &registry.addr()], &[]);
    assert!(ok, "push failed:\n{err}");
    let app = ours(&built)[0]["tags"][0].as_str().unwrap().to_string();
    let version = inspect(&app)["Config"]["Labels"]["org.opencontainers.image.version"].clone();
    for repo in ["weknora/app", "weknora/docreader"] {
        let list = registry.get(
            &format!("/v2/{repo}/manifests/{}", version.as_str().unwrap()),
            "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json",
        );
        let list: Value = serde_json::from_str(&list).unwrap();
        let mut archs: Vec<&str> = list["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        archs.sort();
        assert_eq!(archs, ["amd64", "arm64"], "{repo}: {list}");
    }

    phases.done("push");
    // --clean: refuses without --yes; --dry-run lists; --yes removes containers and images.
    let (ok, _, err) = xtask(&["build-images", "--clean"], &[]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let leftover = docker(&["create", &app]);
    let images_of_ours = || -> std::collections::BTreeSet<String> {
        docker(&["images", "-q", "--no-trunc", "--filter", "label=org.opencontainers.image.source"])
            .lines()
            .map(String::from)
            .collect()
    };
    // Images built on ours: one tagged, one untagged by a rebuild (a dangling child).
    let child = format!("{}:clean-child", app.rsplit_once(':').unwrap().0);
    for n in ["1", "2"] {
        support::docker_build(&child, &format!("FROM {app}\nLABEL weknora.test.child={n}\n"));
    }
    let before = images_of_ours();
    let (ok, out, err) = xtask(&["build-images", "--clean", "--dry-run", "--json"], &[]);
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert!(plan["containers"].as_array().unwrap().iter().any(|c| c == &leftover), "{plan}");
    for b in ours(&built) {
        assert!(plan["images"].as_array().unwrap().contains(&b["id"]), "{plan}");
    }
    // Compared with what was there before: this machine may hold images of other commits too.
    assert_eq!(images_of_ours(), before, "--dry-run removed something");
    assert_ne!(docker(&["ps", "-aq", "--filter", &format!("id={leftover}")]), "", "--dry-run removed the container");
    let (ok, _, err) = xtask(&["build-images", "--clean", "--yes"], &[]);
    assert!(ok, "{err}");
    assert_eq!(docker(&["images", "-q", "weknora/app"]), "", "--clean left images built on ours");
    assert_eq!(docker(&["images", "-q", "weknora/docreader"]), "");
    assert_eq!(docker(&["ps", "-aq", "--filter", &format!("id={leftover}")]), "");
    assert_ne!(docker(&["images", "-q", "weknora/postgres-local"]), "", "--clean without --local-deps keeps them");

    phases.done("clean");
    // The same commit built again, with every crate of this workspace compiled again from
    // nothing: the same image IDs. (Dependencies are reused: rebuilding them too, from an
    // empty target folder, gives the same IDs as well but costs CI eight minutes; their
    // flags and paths are the same in both builds, as `rustflags` remaps every path.)
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut clean = Command::new(cargo);
    clean.args(["clean", "--release", "--target", "x86_64-unknown-linux-gnu"]);
    for package in
        ["weknora-app", "weknora-docreader", "weknora-operator", "weknora-buildinfo", "weknora-docreader-proto"]
    {
        clean.args(["--package", package]);
    }
    assert!(clean.status().unwrap().success(), "cargo clean failed");
    let (ok, out, err) = xtask(&["build-images", "--all", "--platform", "linux/amd64", "--json"], &[]);
    assert!(ok, "rebuild failed:\n{err}");
    let rebuilt: Vec<Value> = serde_json::from_str(&out).unwrap();
    for b in ours(&rebuilt) {
        let first = built.iter().find(|f| f["image"] == b["image"] && f["platform"] == b["platform"]).unwrap();
        assert_eq!(first["id"], b["id"], "{} is not reproducible", b["image"]);
    }
    phases.done("rebuild identically");
}
