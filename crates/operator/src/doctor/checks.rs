//! Verdicts: turns the facts into the rows of doctor's table. Pure functions, so every
//! decision is unit-tested without touching the machine.

use super::probe::{EnvFact, Facts, PortState};
use crate::dotenv::EnvReport;
use crate::report::{Check, Status, check};

const FIX: &str = "cargo xtask doctor --fix";
use crate::disk::{DISK_FAIL_BYTES, DISK_WARN_BYTES, GIB, human_bytes};
/// The stack idles at about 1.5 GiB and peaks near 4 GiB while parsing large documents.
pub const MEMORY_WARN_BYTES: u64 = 4 * GIB;

/// The stack's rows.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    vec![docker_cli(f), docker_daemon(f), compose(f), ports(f), disk(f), memory(f), env_file(f), embedding(f), chat(f)]
}

/// The embedding model of semantic search: the bundled embedder, or the server `.env` names.
fn embedding(f: &Facts) -> Check {
    let (id, name) = ("embedding", "embedding model");
    let Some(url) = &f.embedding.base_url else {
        return check(
            id,
            name,
            Status::Ok,
            format!(
                "the bundled embedder (multilingual-e5-small, 384 dimensions, CPU; `start` builds or imports {})",
                crate::third_party::EMBEDDER_IMAGE
            ),
            None,
        );
    };
    let shown = shown(url);
    match &f.embedding.model {
        Some(model) => {
            check(id, name, Status::Ok, format!("{model} at {shown} (the bundled embedder is not started)"), None)
        }
        None => check(
            id,
            name,
            Status::Warn,
            format!(
                "EMBEDDING_BASE_URL is {shown}, but EMBEDDING_MODEL_NAME is not set: the app would ask it for the bundled model"
            ),
            Some(
                "set EMBEDDING_MODEL_NAME, EMBEDDING_DIMENSION and EMBEDDING_PROVIDER in .env (docs/operations.md, \"Models\")",
            ),
        ),
    }
}

/// A URL without the credentials it may carry (they are not for a table).
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host)),
        None => url.to_string(),
    }
}

/// The built-in chat model (LLM_*), or the extractive answers without one.
fn chat(f: &Facts) -> Check {
    let (id, name) = ("chat", "chat model");
    let Some(url) = &f.chat.base_url else {
        return check(
            id,
            name,
            Status::Ok,
            "none built in: answers are the best passages, cited (extractive), unless a tenant adds a model",
            Some(
                "for written answers set LLM_BASE_URL and LLM_MODEL_NAME, or `cargo xtask start --ollama` (docs/operations.md, \"Chat models\")",
            ),
        );
    };
    let provider = f.chat.provider.as_deref().unwrap_or("openai");
    match &f.chat.model {
        Some(model) => check(id, name, Status::Ok, format!("{model} at {} ({provider})", shown(url)), None),
        None => check(
            id,
            name,
            Status::Fail,
            format!("LLM_BASE_URL is {}, but LLM_MODEL_NAME is not set: the app refuses to start", shown(url)),
            Some("set LLM_MODEL_NAME (and LLM_PROVIDER, LLM_API_KEY) in .env (docs/operations.md, \"Chat models\")"),
        ),
    }
}

fn docker_cli(f: &Facts) -> Check {
    match &f.docker_cli {
        Some(v) => check("docker-cli", "docker CLI", Status::Ok, v.clone(), None),
        None => check("docker-cli", "docker CLI", Status::Fail, "`docker` is not on PATH", Some(FIX)),
    }
}

fn docker_daemon(f: &Facts) -> Check {
    let name = "Docker daemon";
    match &f.daemon {
        Ok(d) => check(
            "docker-daemon",
            name,
            Status::Ok,
            format!("engine {}, API {} (negotiated)", d.server_version, d.api_version),
            None,
        ),
        Err(e) if e.contains("ermission denied") => check(
            "docker-daemon",
            name,
            Status::Fail,
            "the socket refuses this user",
            Some("add yourself to the `docker` group (`sudo usermod -aG docker $USER`), then log in again"),
        ),
        Err(_) if !f.local_daemon => check(
            "docker-daemon",
            name,
            Status::Fail,
            "DOCKER_HOST names a daemon that does not answer",
            Some("start that daemon, or unset DOCKER_HOST"),
        ),
        Err(_) if !f.dockerd_installed => {
            check("docker-daemon", name, Status::Fail, "no Docker engine installed (dockerd not found)", Some(FIX))
        }
        Err(_) => check("docker-daemon", name, Status::Fail, "installed but not running", Some(FIX)),
    }
}

fn compose(f: &Facts) -> Check {
    let name = "compose";
    match &f.compose {
        Some(c) if c.major() >= 2 => {
            check("compose", name, Status::Ok, format!("`{}` v{}", c.display(), c.version), None)
        }
        Some(c) => check(
            "compose",
            name,
            Status::Warn,
            format!("only `{}` v{} (v1: supported, but v2 is preferred)", c.display(), c.version),
            Some(FIX),
        ),
        None => check(
            "compose",
            name,
            Status::Fail,
            "neither `docker compose` (v2) nor `docker-compose` (v1) found",
            Some(FIX),
        ),
    }
}

fn ports(f: &Facts) -> Check {
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    for p in &f.ports {
        match &p.state {
            PortState::Free => parts.push(format!("{} free", p.port)),
            PortState::InUse { holder: Some(h), ours: true } => parts.push(format!("{} ours ({h})", p.port)),
            PortState::InUse { holder, .. } => {
                status = Status::Fail;
                let by = holder.as_ref().map(|h| format!(" by container {h}")).unwrap_or_default();
                parts.push(format!("{} ({}) in use{by}", p.port, p.var));
                fixes.push(format!("set {} to a free port in .env, or stop what holds {}", p.var, p.port));
            }
            PortState::NotChecked(why) => {
                if status == Status::Ok {
                    status = Status::Skip;
                }
                parts.push(format!("{} not checked: {why}", p.port));
            }
            PortState::Invalid(raw) => {
                status = Status::Fail;
                parts.push(format!("{}=`{raw}` is not a port", p.var));
                fixes.push(format!("set {} to a number from 1 to 65535 in .env", p.var));
            }
        }
    }
    if status == Status::Skip && parts.iter().any(|p| p.ends_with("free")) {
        status = Status::Ok;
    }
    let fix = (!fixes.is_empty()).then(|| fixes.join("; "));
    Check { id: "ports", name: "published ports", status, detail: parts.join(", "), fix }
}

fn disk(f: &Facts) -> Check {
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    for d in &f.disks {
        let level = if d.available < DISK_FAIL_BYTES {
            Status::Fail
        } else if d.available < DISK_WARN_BYTES {
            Status::Warn
        } else {
            Status::Ok
        };
        if level == Status::Fail || (level == Status::Warn && status == Status::Ok) {
            status = level;
        }
        parts.push(format!("{} free for {} ({})", human_bytes(d.available), d.what, d.path.display()));
    }
    if parts.is_empty() {
        return check("disk", "disk space", Status::Skip, "could not read free space", None);
    }
    let fix = (status != Status::Ok).then(|| {
        format!(
            "free space: `docker system prune` (unused images and build cache), `cargo clean`; want {} at least",
            human_bytes(DISK_WARN_BYTES)
        )
    });
    Check { id: "disk", name: "disk space", status, detail: parts.join("; "), fix }
}

fn memory(f: &Facts) -> Check {
    match f.mem_available {
        None => check("memory", "memory", Status::Skip, "could not read /proc/meminfo", None),
        Some(m) if m < MEMORY_WARN_BYTES => check(
            "memory",
            "memory",
            Status::Warn,
            format!("{} available; the stack wants {} under load", human_bytes(m), human_bytes(MEMORY_WARN_BYTES)),
            Some("stop other workloads, or lower the memory limits in .env (APP_MEMORY_LIMIT, ...)"),
        ),
        Some(m) => check("memory", "memory", Status::Ok, format!("{} available", human_bytes(m)), None),
    }
}

fn env_file(f: &Facts) -> Check {
    let (id, name) = ("env-file", ".env");
    match &f.env {
        EnvFact::NoTemplate => {
            check(id, name, Status::Skip, "no .env.example in this checkout: nothing to configure yet", None)
        }
        EnvFact::Missing => check(
            id,
            name,
            Status::Warn,
            "missing",
            Some(
                "`cargo xtask start` creates it from .env.example with generated secrets (or copy .env.example to .env)",
            ),
        ),
        EnvFact::Present { env, example } => {
            let report = EnvReport::compare(env, example);
            env_verdict(&report)
        }
    }
}

/// Keys and line numbers only, never values: `.env` holds the stack's secrets.
pub fn env_verdict(report: &EnvReport) -> Check {
    let (id, name) = ("env-file", ".env");
    let mut problems = Vec::new();
    if !report.missing.is_empty() {
        problems.push(format!("missing {}", report.missing.join(", ")));
    }
    if !report.unset.is_empty() {
        problems.push(format!("still empty or a placeholder: {}", report.unset.join(", ")));
    }
    for (line, why) in &report.malformed {
        problems.push(format!("line {line}: {why}"));
    }
    let mut notes = Vec::new();
    if !report.duplicates.is_empty() {
        notes.push(format!("set twice (the last wins): {}", report.duplicates.join(", ")));
    }
    if !report.unknown.is_empty() {
        notes.push(format!("not in .env.example (typo?): {}", report.unknown.join(", ")));
    }
    if report.is_broken() {
        problems.extend(notes);
        let fix = if report.missing_only_generated && report.unset.is_empty() && report.malformed.is_empty() {
            "`cargo xtask start` adds the missing secrets with generated values (an upgrade does too)"
        } else {
            "edit .env: copy the missing keys from .env.example and fill in every empty value"
        };
        check(id, name, Status::Fail, problems.join("; "), Some(fix))
    } else if !notes.is_empty() {
        check(id, name, Status::Warn, notes.join("; "), Some("edit .env"))
    } else {
        check(id, name, Status::Ok, "complete", None)
    }
}

#[cfg(test)]
pub mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::docker::{ComposeCli, DaemonInfo};
    use crate::doctor::probe::*;
    use crate::dotenv::EnvFile;

    /// A machine where everything is in place.
    pub fn healthy() -> Facts {
        Facts {
            host: HostFact { root: true, debian: true },
            docker_cli: Some("Docker version 28.2.2, build e6534b4".into()),
            dockerd_installed: true,
            local_daemon: true,
            daemon: Ok(DaemonInfo { server_version: "20.10.24".into(), api_version: "1.41".into(), root_dir: None }),
            compose: Some(ComposeCli { program: vec!["docker".into(), "compose".into()], version: "2.40.3".into() }),
            pip: true,
            ports: vec![PortFact { var: "APP_PORT", port: 8080, state: PortState::Free }],
            disks: vec![DiskFact { what: "project".into(), path: PathBuf::from("/"), available: 50 * GIB }],
            mem_available: Some(20 * GIB),
            env: EnvFact::NoTemplate,
            embedding: EmbeddingFact::default(),
            chat: ChatFact::default(),
        }
    }

    /// A fresh machine of this project's kind: a docker client, nothing else.
    pub fn fresh() -> Facts {
        let mut f = healthy();
        f.dockerd_installed = false;
        f.daemon = Err("connection refused".into());
        f.compose = None;
        f
    }

    fn status_of(f: &Facts, id: &str) -> Status {
        evaluate(f).into_iter().find(|c| c.id == id).unwrap().status
    }

    #[test]
    fn a_healthy_machine_passes_every_check() {
        let checks = evaluate(&healthy());
        assert!(checks.iter().all(|c| matches!(c.status, Status::Ok | Status::Skip)), "{checks:#?}");
    }

    #[test]
    fn a_production_host_is_judged_on_what_the_stack_needs_only() {
        let checks = evaluate(&healthy());
        assert!(checks.iter().all(|c| matches!(c.status, Status::Ok | Status::Skip)), "{checks:#?}");
        let ids: Vec<&str> = checks.iter().map(|c| c.id).collect();
        for dev_only in ["toolchain", "arm64", "test-servers", "dev-tools"] {
            assert!(!ids.contains(&dev_only), "{dev_only} is the developer's: {ids:?}");
        }
    }

    #[test]
    fn a_fresh_machine_fails_on_the_engine_and_compose() {
        let f = fresh();
        assert_eq!(status_of(&f, "docker-daemon"), Status::Fail);
        assert_eq!(status_of(&f, "compose"), Status::Fail);
        assert_eq!(status_of(&f, "docker-cli"), Status::Ok);
    }

    #[test]
    fn compose_v1_alone_is_a_warning() {
        let mut f = healthy();
        f.compose = Some(ComposeCli { program: vec!["docker-compose".into()], version: "1.29.2".into() });
        assert_eq!(status_of(&f, "compose"), Status::Warn);
    }

    #[test]
    fn a_port_held_by_a_stranger_fails_and_ours_does_not() {
        let mut f = healthy();
        f.ports = vec![PortFact {
            var: "APP_PORT",
            port: 8080,
            state: PortState::InUse { holder: Some("weknora-app-1".into()), ours: true },
        }];
        assert_eq!(status_of(&f, "ports"), Status::Ok);
        f.ports.push(PortFact {
            var: "FRONTEND_PORT",
            port: 80,
            state: PortState::InUse { holder: None, ours: false },
        });
        let c = evaluate(&f).into_iter().find(|c| c.id == "ports").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("80 (FRONTEND_PORT) in use"), "{}", c.detail);
        assert!(c.fix.unwrap().contains("FRONTEND_PORT"));
    }

    #[test]
    fn disk_thresholds() {
        let mut f = healthy();
        f.disks[0].available = 5 * GIB;
        assert_eq!(status_of(&f, "disk"), Status::Warn);
        f.disks[0].available = GIB;
        assert_eq!(status_of(&f, "disk"), Status::Fail);
    }

    #[test]
    fn low_memory_only_warns() {
        let mut f = healthy();
        f.mem_available = Some(GIB);
        assert_eq!(status_of(&f, "memory"), Status::Warn);
    }

    #[test]
    fn an_external_embedding_model_needs_its_name_and_never_shows_credentials() {
        let mut f = healthy();
        assert_eq!(status_of(&f, "embedding"), Status::Ok);
        f.embedding = EmbeddingFact { base_url: Some("https://user:s3cret@embed.example/v1".into()), model: None };
        let c = evaluate(&f).into_iter().find(|c| c.id == "embedding").unwrap();
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("https://embed.example/v1") && !c.detail.contains("s3cret"), "{}", c.detail);
        f.embedding.model = Some("bge-m3".into());
        assert_eq!(status_of(&f, "embedding"), Status::Ok);
    }

    #[test]
    fn the_chat_model_is_named_without_credentials_and_a_missing_name_fails() {
        let mut f = healthy();
        let c = evaluate(&f).into_iter().find(|c| c.id == "chat").unwrap();
        assert!(c.status == Status::Ok && c.detail.contains("extractive"), "{}", c.detail);
        f.chat = ChatFact {
            provider: Some("generic".into()),
            base_url: Some("http://k:pw@llm:8000/v1".into()),
            model: None,
        };
        let c = evaluate(&f).into_iter().find(|c| c.id == "chat").unwrap();
        assert_eq!(c.status, Status::Fail, "the app would refuse to start");
        assert!(c.detail.contains("http://llm:8000/v1") && !c.detail.contains("pw@"), "{}", c.detail);
        f.chat.model = Some("qwen2.5:7b".into());
        let c = evaluate(&f).into_iter().find(|c| c.id == "chat").unwrap();
        assert_eq!((c.status, c.detail.as_str()), (Status::Ok, "qwen2.5:7b at http://llm:8000/v1 (generic)"));
    }

    #[test]
    fn env_verdicts_never_show_values() {
        let example = EnvFile::parse("DB_PASSWORD=\nAPP_PORT=8080\n");
        let env = EnvFile::parse("DB_PASSWORD=hunter2-secret\nAPP_PROT=1\nbroken line\n");
        let mut f = healthy();
        f.env = EnvFact::Present { env, example };
        let c = evaluate(&f).into_iter().find(|c| c.id == "env-file").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("missing APP_PORT") && c.detail.contains("line 3") && c.detail.contains("APP_PROT"),
            "{}",
            c.detail
        );
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }

    #[test]
    fn a_missing_generated_secret_is_one_start_away() {
        let example = EnvFile::parse("DB_PASSWORD=<generated>\nMODELS_ENCRYPTION_KEY=<generated>\n# LLM_BASE_URL=\n");
        let env = EnvFile::parse("DB_PASSWORD=s3cret\nLLM_BASE_URL=http://host.docker.internal:11434\n");
        let mut f = healthy();
        f.env = EnvFact::Present { env, example };
        let c = evaluate(&f).into_iter().find(|c| c.id == "env-file").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.detail, "missing MODELS_ENCRYPTION_KEY", "a documented optional key is not unknown");
        assert!(c.fix.as_deref().unwrap_or("").contains("`cargo xtask start` adds"), "{:?}", c.fix);
    }

    #[test]
    fn a_missing_env_is_a_warning_until_there_is_a_template() {
        let mut f = healthy();
        assert_eq!(status_of(&f, "env-file"), Status::Skip);
        f.env = EnvFact::Missing;
        assert_eq!(status_of(&f, "env-file"), Status::Warn);
    }
}
