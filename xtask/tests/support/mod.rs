//! Test harness: a throwaway PostgreSQL cluster from the machine's Debian packages, on a
//! free loopback port, with password authentication. Stopped and deleted on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const USER: &str = "weknora";
/// Characters that need percent-encoding in a URL, to prove redaction covers both forms.
pub const PASSWORD: &str = "Tst-pw!3x#q@7";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages missing: run `cargo xtask doctor --fix`")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no initdb under /usr/lib/postgresql: run `cargo xtask doctor --fix`")
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// A server tool; as root it runs as `postgres`, since PostgreSQL refuses to run as root.
fn server_command(program: &Path) -> Command {
    if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(program: &Path, args: &[&str]) -> Output {
    let out = server_command(program).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("weknora-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if rustix::process::geteuid().is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let s = |p: &Path| p.to_str().unwrap().to_string();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &s(&data),
                "-U",
                USER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", s(&pwfile)),
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", s(dir.path()));
        run(&bin.join("pg_ctl"), &["-D", &s(&data), "-l", &s(&dir.path().join("log")), "-w", "-o", &opts, "start"]);
        PgCluster { dir, bin, port }
    }

    pub fn url(&self, database: &str) -> String {
        let encoded: String = PASSWORD
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("postgres://{USER}:{encoded}@127.0.0.1:{}/{database}", self.port)
    }

    /// The DB_* variables `cargo xtask migrate` reads, pointing at `database` here.
    pub fn env(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), String::new()),
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), self.port.to_string()),
            ("DB_USER".into(), USER.into()),
            ("DB_PASSWORD".into(), PASSWORD.into()),
            ("DB_NAME".into(), database.into()),
        ]
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = server_command(&self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

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
