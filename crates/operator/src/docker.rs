//! The Docker engine (through bollard) and the compose CLI (v2 plugin, else standalone
//! `docker-compose`): how xtask finds and talks to both.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerCreateBody, ExecConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::dotenv::Vars;
use crate::process::stdout_of;

/// The compose project name when neither the environment nor `.env` sets one.
pub const DEFAULT_PROJECT: &str = "weknora";

/// The compose project name, as compose resolves it: `COMPOSE_PROJECT_NAME` from the
/// environment, then from `.env`, then ours.
pub fn project_name(vars: &Vars) -> String {
    vars.get("COMPOSE_PROJECT_NAME").unwrap_or(DEFAULT_PROJECT).to_string()
}

/// What the daemon told us about itself.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub server_version: String,
    /// The API version bollard settled on with this daemon.
    pub api_version: String,
    pub root_dir: Option<String>,
}

/// Connects to the daemon named by `DOCKER_HOST` (default: the local socket) and
/// negotiates the API version, so older engines (20.10 here) are spoken to in their dialect.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults()
        .context("cannot set up a Docker client (is DOCKER_HOST valid?)")?
        .with_timeout(Duration::from_secs(10));
    docker
        .negotiate_version()
        .await
        .context("the Docker daemon does not answer: run `cargo xtask doctor --fix` to install and start it")
}

/// This host's address on Docker's default bridge: where containers reach a server on the
/// host (what `host-gateway`, and so host.docker.internal, stands for). Engines differ in
/// what they record: some put the gateway in the network's IPAM config, others (Debian's
/// 20.10) only its subnet, whose first address the engine then gives the bridge.
pub async fn bridge_address(docker: &Docker) -> Result<std::net::Ipv4Addr> {
    let network = docker
        .inspect_network("bridge", None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .context("cannot inspect Docker's default bridge network")?;
    let configs = network.ipam.and_then(|i| i.config).unwrap_or_default();
    let pairs: Vec<(Option<String>, Option<String>)> = configs.into_iter().map(|c| (c.gateway, c.subnet)).collect();
    gateway_of(&pairs).with_context(|| {
        format!(
            "Docker's default bridge names neither a gateway nor an IPv4 subnet ({pairs:?}): is dockerd running with \
             its default bridge (not `--bridge=none`)? `docker network inspect bridge` shows what it has"
        )
    })
}

/// The bridge's IPv4 address from its IPAM (gateway, subnet) pairs: a recorded gateway,
/// else the first host address of the subnet.
fn gateway_of(configs: &[(Option<String>, Option<String>)]) -> Option<std::net::Ipv4Addr> {
    let recorded = configs.iter().find_map(|(g, _)| g.as_deref()?.parse().ok());
    recorded.or_else(|| {
        configs.iter().find_map(|(_, subnet)| {
            let (net, bits) = subnet.as_deref()?.split_once('/')?;
            let (net, bits): (std::net::Ipv4Addr, u32) = (net.parse().ok()?, bits.parse().ok()?);
            (bits < 31).then(|| std::net::Ipv4Addr::from(u32::from(net) + 1))
        })
    })
}

/// A client for long transfers and waits (dumps, restores, archive copies): `connect`'s
/// gives up on a request after 10 s.
pub async fn connect_for_transfers() -> Result<Docker> {
    Ok(connect().await?.with_timeout(Duration::from_secs(6 * 3600)))
}

/// Asks the daemon for its version and storage root.
pub async fn daemon_info() -> Result<DaemonInfo> {
    let docker = connect().await?;
    let version = docker.version().await.context("asking the Docker daemon for its version")?;
    let info = docker.info().await.context("asking the Docker daemon for its configuration")?;
    Ok(DaemonInfo {
        server_version: version.version.unwrap_or_else(|| "unknown".into()),
        api_version: docker.client_version().to_string(),
        root_dir: info.docker_root_dir,
    })
}

/// The compose CLI found on this machine: the program and leading arguments to run it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComposeCli {
    /// `["docker", "compose"]` for the v2 plugin, `["docker-compose"]` for a standalone binary.
    pub program: Vec<String>,
    /// The version it reports, without a leading `v`.
    pub version: String,
}

impl ComposeCli {
    pub fn major(&self) -> u32 {
        self.version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
    }

    /// How a person would type it: `docker compose` or `docker-compose`.
    pub fn display(&self) -> String {
        self.program.join(" ")
    }

    /// Finds compose: the `docker compose` v2 plugin first, then a standalone `docker-compose`
    /// (v1, or a v2 binary installed under that name). `WEKNORA_COMPOSE=docker-compose`
    /// insists on the standalone one (the tests run the stack with both).
    pub fn detect() -> Option<ComposeCli> {
        let standalone = stdout_of("docker-compose", &["version"]);
        if std::env::var("WEKNORA_COMPOSE").is_ok_and(|v| v == "docker-compose") {
            return choose_compose(None, standalone.as_deref());
        }
        let plugin = stdout_of("docker", &["compose", "version"]);
        choose_compose(plugin.as_deref(), standalone.as_deref())
    }
}

/// Decides which compose to use from what `docker compose version` and
/// `docker-compose version` printed (`None`: the command failed or does not exist).
pub fn choose_compose(plugin_out: Option<&str>, standalone_out: Option<&str>) -> Option<ComposeCli> {
    if let Some(version) = plugin_out.and_then(parse_compose_version) {
        return Some(ComposeCli { program: vec!["docker".into(), "compose".into()], version });
    }
    standalone_out
        .and_then(parse_compose_version)
        .map(|version| ComposeCli { program: vec!["docker-compose".into()], version })
}

/// Reads the version out of compose's banner. v2 prints `Docker Compose version v2.40.3`;
/// v1 prints `docker-compose version 1.29.2, build unknown` followed by library versions.
pub fn parse_compose_version(output: &str) -> Option<String> {
    let first = output.lines().find(|l| !l.trim().is_empty())?;
    let lower = first.to_ascii_lowercase();
    let rest = lower.strip_prefix("docker compose version").or_else(|| lower.strip_prefix("docker-compose version"))?;
    let version = rest.trim().trim_start_matches('v');
    let version = version.split(|c: char| c.is_whitespace() || c == ',').next()?;
    version.starts_with(|c: char| c.is_ascii_digit()).then(|| version.to_string())
}

/// Runs `cmd` in a running container (`docker exec`, no TTY). Its stdout is written to `out`
/// as it arrives, its stderr collected; returns the exit code and the stderr.
pub async fn exec_to(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    out: &mut dyn std::io::Write,
) -> Result<(i64, String)> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let exec = docker.create_exec(container, config).await.with_context(|| format!("docker exec in {container}"))?;
    let mut stderr = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await? {
        while let Some(chunk) = output.next().await {
            match chunk.with_context(|| format!("reading the output of `{}` in {container}", cmd.join(" ")))? {
                LogOutput::StdOut { message } => out.write_all(&message)?,
                LogOutput::StdErr { message } => stderr.push_str(&String::from_utf8_lossy(&message)),
                _ => {}
            }
        }
    }
    let code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(-1);
    Ok((code, stderr))
}

/// Runs a shell script in a running container and returns its stdout; a non-zero exit is
/// an error naming `what` and carrying the script's stderr. `args` are the script's $1...
pub async fn exec_sh(docker: &Docker, container: &str, what: &str, script: &str, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend(args);
    let mut out = Vec::new();
    let (code, stderr) = exec_to(docker, container, &cmd, &mut out).await?;
    if code != 0 {
        anyhow::bail!("{what} failed in container {container} (exit {code}): {}", stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs `work` with a short-lived container made from `body` (named `<prefix>-<pid>-<time>`):
/// created and started first, always removed after, its anonymous volumes included.
pub async fn with_throwaway<T>(
    docker: &Docker,
    prefix: &str,
    body: ContainerCreateBody,
    work: impl AsyncFnOnce(&str) -> Result<T>,
) -> Result<T> {
    let name = format!("{prefix}-{}-{}", std::process::id(), crate::utc::now());
    let image = body.image.clone().unwrap_or_default();
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker.create_container(Some(options), body).await.with_context(|| format!("creating {name} from {image}"))?;
    let result = match docker.start_container(&name, None).await {
        Ok(()) => work(&name).await,
        Err(e) => Err(e).with_context(|| format!("starting {name}")),
    };
    let remove = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    if let Err(e) = docker.remove_container(&name, Some(remove)).await {
        eprintln!("warning: could not remove the container {name}: {e}");
    }
    result
}

/// Copies files of an image into the folder `to`, each under its own name, replacing what is
/// there at once (a new file is renamed over the old). A throwaway container of the image
/// runs `cmd`, which must end by itself (a scratch image has no shell); files are copied out
/// of it when it has.
pub async fn copy_out_of_image(docker: &Docker, image: &str, cmd: &[&str], files: &[&str], to: &Path) -> Result<()> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
        ..Default::default()
    };
    with_throwaway(docker, "weknora-copy", body, async |name| {
        for file in files {
            let options = DownloadFromContainerOptionsBuilder::default().path(file).build();
            let tar: Vec<u8> = docker
                .download_from_container(name, Some(options))
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("copying {file} out of {image}"))?
                .concat();
            let base = Path::new(file).file_name().context("a file's name")?.to_string_lossy().into_owned();
            let (dest, partial) = (to.join(&base), to.join(format!(".{base}.partial")));
            let mut archive = tar::Archive::new(tar.as_slice());
            let mut entry = archive.entries()?.next().with_context(|| format!("{file} is not in {image}"))??;
            entry.unpack(&partial).with_context(|| format!("writing {}", partial.display()))?;
            std::fs::rename(&partial, &dest).with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    })
    .await
}

/// A file as a stream of 1 MiB chunks, for request bodies.
fn file_chunks(
    path: &std::path::Path,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + use<>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0; 1 << 20];
        let n = std::io::Read::read(&mut file, &mut buf)?;
        buf.truncate(n);
        Ok((n > 0).then(|| (bytes::Bytes::from(buf), file)))
    }))
}

/// Copies a tar archive on disk into a container (running or not) under `dir`.
pub async fn upload_tar(docker: &Docker, container: &str, dir: &str, tar: &std::path::Path) -> Result<()> {
    let options = UploadToContainerOptionsBuilder::default().path(dir).build();
    docker
        .upload_to_container(container, Some(options), bollard::body_try_stream(file_chunks(tar)?))
        .await
        .with_context(|| format!("copying {} into {container}:{dir}", tar.display()))
}

/// `docker load` of an image archive on disk (`docker save` format).
pub async fn load_archive(docker: &Docker, archive: &std::path::Path) -> Result<()> {
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image_stream(options, file_chunks(archive)?, None);
    while let Some(msg) = stream.next().await {
        msg.with_context(|| format!("Docker refused the image archive {}", archive.display()))?;
    }
    Ok(())
}

/// `docker save` of images into one archive on disk.
pub async fn save_images(docker: &Docker, images: &[&str], archive: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(archive).with_context(|| format!("creating {}", archive.display()))?;
    let mut stream = docker.export_images(images);
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk.with_context(|| format!("saving {}", images.join(", ")))?)?;
    }
    file.sync_all()?;
    Ok(())
}

/// Copies `path` out of a container as a tar file; a path that does not exist gives an
/// empty archive (no upload yet).
pub async fn download(docker: &Docker, container: &str, path: &str, to: &Path) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(to)?);
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let mut stream = docker.download_from_container(container, Some(options));
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => file.write_all(&bytes)?,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                drop(file);
                std::fs::remove_file(to)?;
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("copying {path} out of the container")),
        }
    }
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_address_comes_from_the_gateway_or_else_the_subnet() {
        let some = |s: &str| Some(s.to_string());
        // Engines that record the gateway.
        assert_eq!(gateway_of(&[(some("172.17.0.1"), some("172.17.0.0/16"))]), Some([172, 17, 0, 1].into()));
        assert_eq!(gateway_of(&[(some("10.9.0.5"), some("10.9.0.0/24"))]), Some([10, 9, 0, 5].into()));
        // Debian's 20.10: the subnet alone; an IPv6 entry first changes nothing.
        assert_eq!(gateway_of(&[(None, some("172.17.0.0/16"))]), Some([172, 17, 0, 1].into()));
        assert_eq!(
            gateway_of(&[(None, some("fd00::/64")), (None, some("192.168.5.0/24"))]),
            Some([192, 168, 5, 1].into())
        );
        assert_eq!(gateway_of(&[(some(""), some("172.18.0.0/16"))]), Some([172, 18, 0, 1].into()));
        // Nothing to go on.
        assert_eq!(gateway_of(&[]), None);
        assert_eq!(gateway_of(&[(None, None)]), None);
        assert_eq!(gateway_of(&[(None, some("10.0.0.0/32"))]), None);
    }

    const V2: &str = "Docker Compose version v2.40.3\n";
    const V1: &str = "docker-compose version 1.29.2, build unknown\n\
                      docker-py version: 5.0.3\nCPython version: 3.11.2\n\
                      OpenSSL version: OpenSSL 3.0.11 19 Sep 2023\n";

    #[test]
    fn parses_v2_and_v1_banners() {
        assert_eq!(parse_compose_version(V2).as_deref(), Some("2.40.3"));
        assert_eq!(parse_compose_version(V1).as_deref(), Some("1.29.2"));
        assert_eq!(
            parse_compose_version("Docker Compose version 2.24.6+ds1-0+deb13u1").as_deref(),
            Some("2.24.6+ds1-0+deb13u1")
        );
    }

    #[test]
    fn rejects_what_is_not_compose() {
        assert_eq!(parse_compose_version("docker: 'compose' is not a docker command."), None);
        assert_eq!(parse_compose_version(""), None);
        assert_eq!(parse_compose_version("Docker Compose version"), None);
    }

    #[test]
    fn prefers_the_v2_plugin() {
        let cli = choose_compose(Some(V2), Some(V1)).unwrap();
        assert_eq!(cli.program, ["docker", "compose"]);
        assert_eq!(cli.major(), 2);
        assert_eq!(cli.display(), "docker compose");
    }

    #[test]
    fn falls_back_to_standalone_v1() {
        let cli = choose_compose(None, Some(V1)).unwrap();
        assert_eq!(cli.program, ["docker-compose"]);
        assert_eq!(cli.version, "1.29.2");
        assert_eq!(cli.major(), 1);
    }

    #[test]
    fn a_standalone_v2_binary_is_v2() {
        let cli = choose_compose(Some("docker: 'compose' is not a docker command."), Some(V2)).unwrap();
        assert_eq!(cli.program, ["docker-compose"]);
        assert_eq!(cli.major(), 2);
    }

    #[test]
    fn none_when_neither_answers() {
        assert_eq!(choose_compose(None, None), None);
    }
}
