//! `cargo xtask doctor` run as an operator runs it, against this machine's real Docker
//! engine, where one runs (`require!(Need::DockerEngine)`).

use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::Value;
use weknora_testkit::{Need, require};

fn doctor(args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("doctor")
        .arg("--json")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running xtask doctor");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}"))
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn reports_the_live_daemon_and_compose_as_ok() {
    require!(Need::DockerEngine);
    let (out, report) = doctor(&[], &[]);
    let daemon = check(&report, "docker-daemon");
    assert_eq!(daemon["status"], "ok", "{daemon}");
    // The API version doctor negotiated is the one the engine itself reports.
    let api = stdout_of("docker", &["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(daemon["detail"].as_str().unwrap().contains(&format!("API {api}")), "{daemon} vs {api}");
    let compose = check(&report, "compose");
    assert_eq!(compose["status"], "ok", "{compose}");
    assert!(compose["detail"].as_str().unwrap().contains("docker compose"), "{compose}");
    assert_eq!(report["ok"], out.status.success());
}

#[test]
fn a_second_fix_changes_nothing() {
    require!(Need::DockerEngine);
    let (out, report) = doctor(&["--fix"], &[]);
    assert_eq!(report["fix"]["steps"], serde_json::json!([]), "{report}");
    assert_eq!(report["fix"]["applied"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to fix"));
}

#[test]
fn a_taken_port_fails_and_names_its_variable() {
    let listener = TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (out, report) = doctor(&[], &[("APP_PORT", &port)]);
    let ports = check(&report, "ports");
    assert_eq!(ports["status"], "fail", "{ports}");
    assert!(ports["detail"].as_str().unwrap().contains(&format!("{port} (APP_PORT) in use")), "{ports}");
    assert!(!out.status.success());
    assert_eq!(report["ok"], false);
}

#[test]
fn a_port_that_is_not_a_number_fails() {
    let (out, report) = doctor(&[], &[("FRONTEND_PORT", "eighty")]);
    let ports = check(&report, "ports");
    assert_eq!(ports["status"], "fail");
    assert!(ports["fix"].as_str().unwrap().contains("FRONTEND_PORT"));
    assert!(!out.status.success());
}
