//! Both stacks pass compose-lint (PyPI, the version `doctor --fix --dev` pins) at threshold
//! medium: docker-compose.yml, and the development stack as compose merges it with its
//! override docker-compose.dev.yml (`docker compose config`, which needs no engine). A finding that remains is accepted in `.compose-lint.yml` with its
//! reason, never silently: an accepted finding without a real reason fails here.
//!
//! The running stack is checked too (stack_live: what each container runs as, and with).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use weknora_testkit::{Need, require};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `python3 -m compose_lint <args>` in the checkout: (exit code, stdout, stderr).
fn compose_lint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("python3")
        .args(["-m", "compose_lint"])
        .args(args)
        .current_dir(root())
        .output()
        .expect("running python3");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn both_compose_files_pass_compose_lint_at_medium_with_every_exception_justified() {
    require!(Need::ComposeLint);
    let (code, version, err) = compose_lint(&["--version"]);
    assert_eq!(code, 0, "compose-lint is missing: cargo xtask doctor --fix --dev\n{err}");
    // The pin xtask's doctor installs (its unit tests keep COMPOSE_LINT_VERSION equal to it).
    let requirements = std::fs::read_to_string(root().join("xtask/requirements.txt")).unwrap();
    let pinned =
        requirements.lines().find_map(|l| l.trim().strip_prefix("compose-lint==")).expect("compose-lint's pin");
    assert_eq!(version.trim(), format!("compose-lint {pinned}"));

    // The development stack, merged as compose merges it; uninterpolated, as shipped.
    let merged = Command::new("docker")
        .args(["compose", "-p", "weknora-dev", "-f", "docker-compose.yml", "-f", "docker-compose.dev.yml"])
        .args(["config", "--no-interpolate"])
        .current_dir(root())
        .output()
        .expect("running docker compose");
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let dev = std::env::temp_dir().join(format!("weknora-compose-dev-{}.yml", std::process::id()));
    std::fs::write(&dev, &merged.stdout).unwrap();

    for file in ["docker-compose.yml", dev.to_str().unwrap()] {
        // --no-env: the files as shipped, whatever a developer's .env holds.
        let args = ["check", "--no-env", "--config", ".compose-lint.yml", "--fail-on", "medium", "--format", "json"];
        let (code, out, err) = compose_lint(&[&args[..], &[file]].concat());
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{file}: {e}\n{out}\n{err}"));
        assert_eq!(code, 0, "{file} fails compose-lint at medium:\n{out}\n{err}");
        assert_eq!(report["errors"], Value::Array(vec![]), "{file}: {report}");
        let findings = report["findings"].as_array().unwrap();
        for f in findings {
            let reason = f["suppression_reason"].as_str().unwrap_or("");
            assert!(
                f["suppressed"] == true && reason.len() > 20 && !reason.contains("TODO"),
                "{file}: a finding without a reason: {f}"
            );
        }
        // What hardening guarantees, whatever the config accepts: no service of ours keeps a
        // writable root or its capabilities, and every service has memory and CPU limits.
        for rule in ["CL-0003", "CL-0006", "CL-0026"] {
            let hit: Vec<&Value> = findings.iter().filter(|f| f["rule_id"] == rule).collect();
            assert!(hit.is_empty(), "{file}: {rule} is accepted somewhere: {hit:?}");
        }
        for f in findings.iter().filter(|f| f["rule_id"] == "CL-0007") {
            let service = f["service"].as_str().unwrap();
            assert!(
                !["app", "docreader", "frontend", "embedder"].contains(&service),
                "{file}: {service}'s root is writable"
            );
        }
    }
    let _ = std::fs::remove_file(&dev);
}
