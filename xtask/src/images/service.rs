//! Our Rust services' images: which binary, which files, which runtime settings, from
//! weknora-stack-spec. The Dockerfiles in docker/ describe the same images for a plain
//! `docker build`; the Docker-backed tests check that both agree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::archive::{Entry, Runtime};
use crate::paths;
use weknora_stack_spec as spec;

/// The unprivileged user the services run as (no passwd entry needed in a scratch image).
pub const UID: u64 = spec::UID as u64;
/// Where the host keeps its CA bundle (Debian's ca-certificates); copied into the images.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RustService {
    /// `app`, as in `--app` and `docker/Dockerfile.app`.
    pub name: &'static str,
    /// The image repository, without tag.
    pub repository: &'static str,
    /// The cargo package and its binary (same name).
    pub binary: &'static str,
    pub description: &'static str,
    pub port: u16,
    /// The healthcheck's interval, timeout and start period, in seconds.
    pub health_timing: (u64, u64, u64),
    /// Ships config/config.yaml and a writable state folder (the app's file storage).
    pub stateful: bool,
    /// The stack spec's declaration: the image's environment, user, working folder, entry
    /// point and healthcheck (docker/Dockerfile.<name>'s tail is generated from the same).
    pub declared: spec::Service,
}

pub const APP: RustService = RustService { binary: "weknora-app", stateful: true, ..declared(spec::APP) };

pub const DOCREADER: RustService =
    RustService { binary: "weknora-docreader", stateful: false, ..declared(spec::DOCREADER) };

/// What the stack spec says of one of our Rust services.
const fn declared(service: spec::Service) -> RustService {
    let (spec::Image::Ours { repository, .. }, Some(port), Some(health)) =
        (service.image, service.port, service.health)
    else {
        panic!("a service of ours, with a port and a healthcheck")
    };
    RustService {
        name: service.name,
        repository,
        binary: "",
        description: service.description,
        port,
        health_timing: (health.interval as u64, health.timeout as u64, health.start as u64),
        stateful: false,
        declared: service,
    }
}

/// In-image paths.
const BIN_DIR: &str = "/usr/local/bin";
const CONFIG: &str = "/etc/weknora/config.yaml";
const STATE_DIR: &str = "/var/lib/weknora";

impl RustService {
    pub fn dockerfile(&self) -> PathBuf {
        paths::docker_dir().join(format!("Dockerfile.{}", self.name))
    }

    fn exe(&self) -> String {
        format!("{BIN_DIR}/{}", self.binary)
    }

    /// The image's files, from the built binary and the host's CA bundle.
    pub fn entries(&self, binary: &Path) -> Result<Vec<Entry>> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let certs = read(Path::new(HOST_CA_BUNDLE)).context(
            "the images carry the host's CA certificates: install them with `apt-get install ca-certificates`",
        )?;
        let mut entries =
            vec![Entry::file(&self.exe(), 0o755, read(binary)?), Entry::file(HOST_CA_BUNDLE, 0o644, certs)];
        if self.stateful {
            entries.push(Entry::file(CONFIG, 0o644, read(&paths::app_config())?));
            entries.push(Entry::dir(STATE_DIR, 0o755, UID));
            // The mount point of the uploads volume: a new volume takes its owner from here.
            entries.push(Entry::dir(&format!("{STATE_DIR}/data"), 0o755, UID));
        }
        Ok(entries)
    }

    /// How the image runs: unprivileged, the binary as entrypoint, healthcheck through the binary.
    pub fn runtime(&self, labels: std::collections::BTreeMap<String, String>) -> Runtime {
        let d = &self.declared;
        let strings = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        let healthcheck = match d.health.map(|h| h.probe) {
            Some(spec::Probe::Exec(cmd)) => strings(cmd),
            other => panic!("{}: a healthcheck through the binary, not {other:?}", self.name),
        };
        Runtime {
            user: d.user.unwrap_or(spec::USER).to_string(),
            entrypoint: strings(d.entrypoint),
            env: d.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            working_dir: d.workdir.unwrap_or("/").into(),
            exposed_ports: vec![format!("{}/tcp", self.port)],
            healthcheck,
            health_timing: self.health_timing,
            labels,
        }
    }

    /// Files of the plain-`docker build` context for docker/Dockerfile.<name>: names in the
    /// context and where they come from (`None`: an empty folder).
    pub fn context_files(&self, binary: &Path) -> Vec<(String, Option<PathBuf>)> {
        let mut files = vec![
            ("Dockerfile".to_string(), Some(self.dockerfile())),
            (self.binary.to_string(), Some(binary.to_path_buf())),
            ("ca-certificates.crt".to_string(), Some(PathBuf::from(HOST_CA_BUNDLE))),
        ];
        if self.stateful {
            files.push(("config.yaml".into(), Some(paths::app_config())));
            files.push(("state/data".into(), None));
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_run_unprivileged_with_their_binary_as_healthcheck() {
        let rt = APP.runtime(Default::default());
        assert_eq!(rt.user, "65532:65532");
        assert_eq!(rt.entrypoint, ["/usr/local/bin/weknora-app"]);
        assert_eq!(rt.healthcheck, ["/usr/local/bin/weknora-app", "healthcheck"]);
        assert_eq!(rt.exposed_ports, ["8080/tcp"]);
        assert!(rt.env.contains(&"WEKNORA_CONFIG=/etc/weknora/config.yaml".to_string()));
        assert_eq!(rt.working_dir, "/var/lib/weknora");
        let rt = DOCREADER.runtime(Default::default());
        assert_eq!(rt.exposed_ports, ["50051/tcp"]);
        assert!(!rt.env.iter().any(|e| e.starts_with("WEKNORA_CONFIG")));
    }

    #[test]
    fn the_app_context_has_binary_certs_config_and_state_folder() {
        let names: Vec<String> = APP.context_files(Path::new("/x/weknora-app")).into_iter().map(|f| f.0).collect();
        assert_eq!(names, ["Dockerfile", "weknora-app", "ca-certificates.crt", "config.yaml", "state/data"]);
        let names: Vec<String> =
            DOCREADER.context_files(Path::new("/x/weknora-docreader")).into_iter().map(|f| f.0).collect();
        assert_eq!(names, ["Dockerfile", "weknora-docreader", "ca-certificates.crt"]);
        for service in [APP, DOCREADER] {
            assert!(service.dockerfile().is_file(), "{} is missing", service.dockerfile().display());
        }
    }

    #[test]
    fn the_dockerfiles_copy_every_context_file() {
        // (Their runtime tails are generated from the stack spec: codegen's freshness tests.)
        for service in [APP, DOCREADER] {
            let text = std::fs::read_to_string(service.dockerfile()).unwrap();
            for (path, _) in service.context_files(Path::new("/x")).into_iter().skip(1) {
                let name = path.split('/').next().unwrap();
                let copied = text.lines().any(|l| l.starts_with("COPY ") && l.split_whitespace().any(|w| w == name));
                assert!(copied, "{} does not COPY {name}", service.dockerfile().display());
            }
        }
    }
}
