//! Gathers the facts doctor judges: what is installed, running, free and configured.
//! Only observation here; the verdicts are in `checks`, the remedies in `fix`.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use bollard::query_parameters::ListContainersOptions;

use crate::docker::{self, ComposeCli, DaemonInfo};
use crate::dotenv::{EnvFile, Vars};
use crate::paths;
use crate::process::{on_path, stdout_of};

/// A port the stack publishes, and which variable moves it.
#[derive(Debug, Clone, Copy)]
pub struct PortSpec {
    pub var: &'static str,
    pub default: u16,
    /// Published only by the development compose file.
    pub dev_only: bool,
}

/// The ports docker-compose.yml (and, in dev mode, its override docker-compose.dev.yml) publishes.
pub const STACK_PORTS: &[PortSpec] = &[
    PortSpec { var: "FRONTEND_PORT", default: 80, dev_only: false },
    PortSpec { var: "APP_PORT", default: 8080, dev_only: false },
    PortSpec { var: "DOCREADER_PORT", default: 50051, dev_only: true },
    PortSpec { var: "DB_PORT", default: 5432, dev_only: true },
    PortSpec { var: "REDIS_PORT", default: 6379, dev_only: true },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    Free,
    /// Something listens there; `holder` names the container when Docker knows it.
    InUse {
        holder: Option<String>,
        ours: bool,
    },
    /// Could not be tested (e.g. a privileged port without root).
    NotChecked(String),
    /// The variable does not hold a port number.
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct PortFact {
    pub var: &'static str,
    pub port: u16,
    pub state: PortState,
}

#[derive(Debug, Clone)]
pub struct DiskFact {
    pub what: String,
    pub path: PathBuf,
    pub available: u64,
}

/// The operator's `.env`, if the stack defines one (`.env.example` exists).
#[derive(Debug)]
pub enum EnvFact {
    /// The stack has no `.env.example` (yet): nothing to compare against.
    NoTemplate,
    Missing,
    Present {
        env: EnvFile,
        example: EnvFile,
    },
}

#[derive(Debug)]
pub struct HostFact {
    pub root: bool,
    pub debian: bool,
}

/// What running the stack needs from this machine: every command that starts or checks
/// the stack gathers these, and nothing more.
#[derive(Debug)]
pub struct Facts {
    pub host: HostFact,
    pub docker_cli: Option<String>,
    pub dockerd_installed: bool,
    /// Whether DOCKER_HOST points at this machine's socket (so starting dockerd would help).
    pub local_daemon: bool,
    pub daemon: Result<DaemonInfo, String>,
    pub compose: Option<ComposeCli>,
    pub pip: bool,
    pub ports: Vec<PortFact>,
    pub disks: Vec<DiskFact>,
    pub mem_available: Option<u64>,
    pub env: EnvFact,
    pub embedding: EmbeddingFact,
    pub chat: ChatFact,
}

/// The built-in chat model `.env` (or the environment) names (LLM_*); None: none.
#[derive(Debug, Default)]
pub struct ChatFact {
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

/// The embedding model `.env` (or the environment) chooses; None: the bundled embedder.
#[derive(Debug, Default)]
pub struct EmbeddingFact {
    pub base_url: Option<String>,
    pub model: Option<String>,
}

/// The stack's facts (with `dev_ports`, the development compose file's ports too).
pub async fn gather(dev_ports: bool) -> Facts {
    let env = env_fact();
    let daemon = docker::daemon_info().await.map_err(|e| format!("{e:#}"));
    let ports = ports(dev_ports).await;
    let compose = ComposeCli::detect();
    let disk_paths = [
        ("project", paths::project_root()),
        (
            "docker data",
            PathBuf::from(
                daemon.as_ref().ok().and_then(|d| d.root_dir.clone()).unwrap_or_else(|| "/var/lib/docker".into()),
            ),
        ),
    ];
    let vars = Vars::load();
    Facts {
        host: host_fact(),
        docker_cli: stdout_of("docker", &["--version"]),
        dockerd_installed: on_path("dockerd"),
        local_daemon: std::env::var("DOCKER_HOST").map_or(true, |h| h.is_empty() || h.starts_with("unix://")),
        daemon,
        compose,
        pip: stdout_of("python3", &["-m", "pip", "--version"]).is_some(),
        ports,
        disks: disks(&disk_paths),
        mem_available: fs::read_to_string("/proc/meminfo").ok().and_then(|m| parse_meminfo_available(&m)),
        env,
        embedding: embedding_fact(&vars),
        chat: chat_fact(&vars),
    }
}

/// Who runs this, where: whether set-up steps may install packages.
pub fn host_fact() -> HostFact {
    HostFact {
        root: rustix::process::geteuid().is_root(),
        debian: Path::new("/etc/debian_version").exists() && on_path("apt-get"),
    }
}

fn embedding_fact(vars: &Vars) -> EmbeddingFact {
    if crate::compose::embedder_bundled(vars) {
        return EmbeddingFact::default();
    }
    EmbeddingFact {
        base_url: vars.get("EMBEDDING_BASE_URL").map(str::to_string),
        model: vars.get("EMBEDDING_MODEL_NAME").map(str::to_string),
    }
}

fn chat_fact(vars: &Vars) -> ChatFact {
    let get = |key| vars.get(key).map(str::to_string);
    let provider = get("LLM_PROVIDER");
    let base_url = match (get("LLM_BASE_URL"), provider.as_deref()) {
        (None, Some("ollama")) => get("OLLAMA_BASE_URL"),
        (url, _) => url,
    };
    ChatFact { provider, base_url, model: get("LLM_MODEL_NAME") }
}

fn env_fact() -> EnvFact {
    let Ok(example) = fs::read_to_string(paths::env_example()) else {
        return EnvFact::NoTemplate;
    };
    match fs::read_to_string(paths::env_file()) {
        Ok(env) => EnvFact::Present { env: EnvFile::parse(&env), example: EnvFile::parse(&example) },
        Err(_) => EnvFact::Missing,
    }
}

/// The port each variable resolves to, as compose would: the process environment first,
/// then `.env`, then the default.
pub fn resolve_ports(dev: bool, vars: &Vars) -> Vec<(&'static str, Result<u16, String>)> {
    STACK_PORTS
        .iter()
        .filter(|spec| dev || !spec.dev_only)
        .map(|spec| {
            let port = match vars.get(spec.var) {
                None => Ok(spec.default),
                Some(raw) => raw.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| raw.to_string()),
            };
            (spec.var, port)
        })
        .collect()
}

/// Tests whether a TCP port can be bound on all interfaces, as Docker's port publishing must.
pub fn probe_port(port: u16) -> PortState {
    match TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => PortState::Free,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => PortState::InUse { holder: None, ours: false },
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            PortState::NotChecked(format!("port {port} needs root to bind; Docker publishes it anyway"))
        }
        Err(e) => PortState::NotChecked(e.to_string()),
    }
}

async fn ports(dev: bool) -> Vec<PortFact> {
    let vars = Vars::load();
    let project = docker::project_name(&vars);
    let holders = port_holders().await;
    resolve_ports(dev, &vars)
        .into_iter()
        .map(|(var, port)| match port {
            Err(raw) => PortFact { var, port: 0, state: PortState::Invalid(raw) },
            Ok(port) => {
                let state = match probe_port(port) {
                    PortState::InUse { .. } => {
                        let holder = holders.get(&port);
                        PortState::InUse {
                            holder: holder.map(|(name, _)| name.clone()),
                            ours: holder.is_some_and(|(_, p)| p.as_deref() == Some(project.as_str())),
                        }
                    }
                    other => other,
                };
                PortFact { var, port, state }
            }
        })
        .collect()
}

/// Published host port -> (container name, compose project) for running containers.
async fn port_holders() -> BTreeMap<u16, (String, Option<String>)> {
    let mut holders = BTreeMap::new();
    let Ok(docker) = docker::connect().await else { return holders };
    let Ok(containers) = docker.list_containers(Some(ListContainersOptions::default())).await else {
        return holders;
    };
    for c in containers {
        let name =
            c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default();
        let project = c.labels.as_ref().and_then(|l| l.get("com.docker.compose.project")).cloned();
        for p in c.ports.unwrap_or_default() {
            if let Some(public) = p.public_port {
                holders.insert(public, (name.clone(), project.clone()));
            }
        }
    }
    holders
}

/// Free space per filesystem; paths on the same filesystem are reported once.
fn disks(paths: &[(&str, PathBuf)]) -> Vec<DiskFact> {
    let mut seen = Vec::new();
    let mut out: Vec<DiskFact> = Vec::new();
    for (what, path) in paths {
        // A directory that does not exist yet (docker's, before the install) fills its parent.
        let Some((fsid, available)) = crate::disk::free(path) else { continue };
        if let Some(i) = seen.iter().position(|seen| *seen == fsid) {
            out[i].what.push_str(&format!(", {what}"));
            continue;
        }
        seen.push(fsid);
        out.push(DiskFact { what: what.to_string(), path: path.clone(), available });
    }
    out
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn parse_meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_resolve_like_compose_does() {
        let env = EnvFile::parse("APP_PORT=9090\nFRONTEND_PORT=8000\n");
        let process: BTreeMap<String, String> = [("FRONTEND_PORT".to_string(), "8081".to_string())].into();
        let ports = resolve_ports(false, &Vars::new(process, env));
        assert_eq!(ports, [("FRONTEND_PORT", Ok(8081)), ("APP_PORT", Ok(9090))]);
        let dev = resolve_ports(true, &Vars::default());
        assert_eq!(dev.len(), STACK_PORTS.len());
        assert!(dev.contains(&("DB_PORT", Ok(5432))));
    }

    #[test]
    fn a_port_that_is_not_a_number_is_invalid() {
        let env = EnvFile::parse("APP_PORT=eighty\nFRONTEND_PORT=0\n");
        let ports = resolve_ports(false, &Vars::new(BTreeMap::new(), env));
        assert_eq!(ports, [("FRONTEND_PORT", Err("0".to_string())), ("APP_PORT", Err("eighty".to_string()))]);
    }

    #[test]
    fn a_listening_port_is_in_use_and_a_released_one_is_free() {
        let listener = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe_port(port), PortState::InUse { holder: None, ours: false });
        drop(listener);
        assert_eq!(probe_port(port), PortState::Free);
    }

    #[test]
    fn reads_available_memory() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo_available("MemTotal: 1 kB\n"), None);
    }
}
