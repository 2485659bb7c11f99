//! `cargo xtask build-images`: our services' images, reproducible and labelled, for one or
//! more platforms; the local stand-ins for third-party images; pushing to a registry as one
//! multi-platform manifest list; cleaning up.
//!
//! The Rust services' images are written by xtask itself (see `archive`) and loaded into
//! Docker through bollard; the Debian-based stand-ins are Dockerfile builds through bollard.

mod archive;
pub mod checkout;
mod local_deps;
mod meta;
mod nix;
mod platform;
mod registry;
mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder, PruneImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;

pub use local_deps::{EMBEDDER_IMAGE, LOCAL_DEPS};
use weknora_operator::{docker, third_party};

/// A local image (`weknora/postgres-local:17`, the embedder, ...), built when Docker lacks it.
pub async fn ensure_local_image(docker: &bollard::Docker, image: &str) -> anyhow::Result<()> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    weknora_operator::host::Images::ensure_local(&checkout::CheckoutImages, docker, image).await
}
pub use meta::BuildMeta;
pub use platform::Platform;
pub use service::{APP, DOCREADER, RustService};

#[derive(clap::Args)]
pub struct BuildImages {
    /// The API image (weknora/app).
    #[arg(long)]
    app: bool,
    /// The document parser image (weknora/docreader).
    #[arg(long)]
    docreader: bool,
    /// The web UI image (weknora/frontend: nginx with services/frontend/), for this machine's
    /// platform, on the upstream nginx image or the local stand-in.
    #[arg(long)]
    frontend: bool,
    /// All our images (the default when none is named).
    #[arg(long)]
    all: bool,
    /// The local images from Debian packages: stand-ins for third-party images (PostgreSQL
    /// 17 + pgvector, Redis, nginx) for sites that cannot pull from a registry, and the
    /// bundled embedding model (weknora/embedder-local).
    #[arg(long)]
    local_deps: bool,
    /// Platforms, comma-separated: linux/amd64, linux/arm64 (default: this machine's).
    #[arg(long, value_name = "LIST")]
    platform: Option<String>,
    /// An extra tag on every image, e.g. `latest` (repeatable). Images are always tagged
    /// `<version>` and `<version>-<commit>`.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Push to this registry (host[:port]) and join the platforms in one manifest list.
    #[arg(long, value_name = "REGISTRY")]
    push: Option<String>,
    /// Write plain `docker build` contexts for our Dockerfiles into DIR instead of loading images.
    #[arg(long, value_name = "DIR", conflicts_with = "push")]
    context_dir: Option<PathBuf>,
    /// Remove containers that use our images, the images, and our dangling layers.
    #[arg(long, conflicts_with_all = ["push", "context_dir", "tags", "platform"])]
    clean: bool,
    /// Confirm `--clean`.
    #[arg(long, requires = "clean")]
    yes: bool,
    /// With `--clean`: list what would be removed, remove nothing.
    #[arg(long, requires = "clean")]
    dry_run: bool,
    /// An APT mirror for the Debian-based images, e.g. http://mirror.internal/debian.
    #[arg(long, env = "APT_MIRROR", value_name = "URL")]
    apt_mirror: Option<String>,
    /// Build through the Nix flake (`nix build .#<service>-image`) instead of cargo, and
    /// load the results into Docker.
    #[arg(long, conflicts_with_all = ["local_deps", "push", "context_dir", "clean", "tags"])]
    nix: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One image that is now in Docker.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub image: String,
    pub platform: String,
    pub id: String,
    pub tags: Vec<String>,
    pub size_bytes: i64,
}

impl BuildImages {
    pub fn run(self) -> Result<ExitCode> {
        let rt = weknora_operator::host::runtime()?;
        rt.block_on(self.run_async())
    }

    fn nothing_named(&self) -> bool {
        !self.app && !self.docreader && !self.frontend && !self.local_deps
    }

    fn services(&self) -> Vec<RustService> {
        let named = [(self.app, APP), (self.docreader, DOCREADER)];
        named.into_iter().filter(|(on, _)| *on || self.all || self.nothing_named()).map(|(_, s)| s).collect()
    }

    fn with_frontend(&self) -> bool {
        self.frontend || self.all || self.nothing_named()
    }

    /// Just these of our images, for this machine's platform (what `start` and `restart` build).
    pub fn only(app: bool, docreader: bool, frontend: bool) -> BuildImages {
        BuildImages {
            app,
            docreader,
            frontend,
            all: false,
            local_deps: false,
            platform: None,
            tags: Vec::new(),
            push: None,
            context_dir: None,
            clean: false,
            yes: false,
            dry_run: false,
            apt_mirror: std::env::var("APT_MIRROR").ok(),
            nix: false,
            json: false,
        }
    }

    async fn run_async(self) -> Result<ExitCode> {
        for tag in &self.tags {
            check_tag(tag)?;
        }
        if self.clean {
            let mut repositories: Vec<&str> = self.services().iter().map(|s| s.repository).collect();
            if self.with_frontend() {
                repositories.push(FRONTEND_REPOSITORY);
            }
            if self.local_deps {
                repositories.extend(LOCAL_DEPS.iter().map(|d| d.repository()));
            }
            return clean(&repositories, self.yes, self.dry_run, self.json).await;
        }
        let built = if self.nix { self.execute_nix().await? } else { self.execute().await? };
        if self.context_dir.is_none() {
            report(&built, self.json)?;
        }
        Ok(ExitCode::SUCCESS)
    }

    fn platforms(&self) -> Result<Vec<Platform>> {
        let host = Platform::host()?;
        match &self.platform {
            Some(list) => Platform::parse_list(list, host),
            None => Ok(vec![host]),
        }
    }

    /// `--nix`: the selected images from the flake.
    async fn execute_nix(&self) -> Result<Vec<Built>> {
        nix::ensure_installed()?;
        let mut names: Vec<&str> = self.services().iter().map(|s| s.name).collect();
        if self.with_frontend() {
            names.push("frontend");
        }
        let platforms = self.platforms()?;
        let docker = docker::connect().await?;
        nix::build(&docker, &names, &platforms, Platform::host()?).await
    }

    /// Builds (and pushes) what was asked; the images now in Docker.
    pub async fn execute(&self) -> Result<Vec<Built>> {
        let registry = self.push.as_deref().map(registry::normalize).transpose()?;
        let services = self.services();
        let host = Platform::host()?;
        let platforms = self.platforms()?;
        let workspace = Workspace::read()?;
        let meta = BuildMeta::detect(&workspace.version, &workspace.repository)?;
        eprintln!(
            "==> weknora {} (commit {}{}, {})",
            meta.version,
            meta.short,
            if meta.dirty { ", uncommitted changes" } else { "" },
            meta.created
        );
        if !services.is_empty() {
            for p in &platforms {
                cargo_build(&workspace, &meta, *p, host)?;
            }
        }
        if let Some(dir) = &self.context_dir {
            write_contexts(dir, &workspace, &services, &platforms)?;
            return Ok(Vec::new());
        }
        let docker = docker::connect().await?;
        let mut built = Vec::new();
        if self.local_deps {
            built.extend(local_deps::build(&docker, &meta, self.apt_mirror.as_deref()).await?);
        }
        for service in &services {
            for p in &platforms {
                let binary = workspace.binary(service, *p);
                built.push(load_service_image(&docker, service, &binary, &meta, *p, host, &self.tags).await?);
            }
        }
        if self.with_frontend() {
            let vars = weknora_operator::dotenv::Vars::load();
            let source = third_party::Source::parse(vars.get("IMAGE_SOURCE"))?;
            let mut resolver = third_party::Resolver::new(&docker, source);
            let nginx = resolver.image(&third_party::NGINX, vars.get(third_party::NGINX.env)).await?;
            built.push(build_frontend(&docker, &meta, &nginx, &self.tags).await?);
        }
        if let Some(registry) = &registry {
            let mut repositories: Vec<&str> = services.iter().map(|s| s.repository).collect();
            if self.with_frontend() {
                repositories.push(FRONTEND_REPOSITORY);
            }
            for repository in repositories {
                let images: Vec<&Built> = built.iter().filter(|b| b.image == repository).collect();
                registry::push(&docker, registry, repository, &images, &meta.tags(&self.tags)).await?;
            }
        }
        Ok(built)
    }
}

/// The development image (docker/Dockerfile.app.dev) as `image`, on its debootstrap'd
/// base (made when missing), with this machine's CA bundle so TLS-inspecting proxies work.
pub async fn build_dev_image(docker: &Docker, meta: &BuildMeta, image: &str) -> Result<()> {
    let apt_mirror = std::env::var("APT_MIRROR").ok();
    local_deps::ensure_base(docker, "trixie", apt_mirror.as_deref()).await?;
    let context_dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(crate::paths::docker_dir().join("app-dev"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), context_dir.path().join(entry.file_name()))?;
    }
    if Path::new(service::HOST_CA_BUNDLE).exists() {
        std::fs::copy(service::HOST_CA_BUNDLE, context_dir.path().join("ca-certificates.crt"))?;
    }
    let dockerfile = crate::paths::docker_dir().join("Dockerfile.app.dev");
    let context = local_deps::context_tar(
        tar::Builder::new(Vec::new()),
        &[(context_dir.path().to_path_buf(), ".".into())],
        &dockerfile,
        "Dockerfile",
    )?;
    let mut args = HashMap::new();
    if let Some(m) = apt_mirror.filter(|m| !m.is_empty()) {
        args.insert("APT_MIRROR".to_string(), m);
    }
    let labels: HashMap<String, String> =
        meta.labels("weknora-app-dev", "weknora-app for development: toolchain and hot reload").into_iter().collect();
    eprintln!("==> building {image} from {}", dockerfile.display());
    local_deps::build_dockerfile(docker, image, "Dockerfile", context, &args, &labels).await
}

/// The frontend image's repository.
pub const FRONTEND_REPOSITORY: &str = repository("frontend");

/// The repository we build our service `name` under (weknora-stack-spec's `weknora/<name>`).
pub const fn repository(name: &str) -> &'static str {
    let mut i = 0;
    while i < weknora_stack_spec::OURS.len() {
        let s = weknora_stack_spec::OURS[i];
        // (`==` on str is not const; the names are lower case.)
        if s.name.eq_ignore_ascii_case(name)
            && let Some(repository) = s.repository()
        {
            return repository;
        }
        i += 1;
    }
    panic!("not one of our services")
}

/// Builds docker/Dockerfile.frontend on `nginx` (this machine's platform only: the
/// image holds no compiled code of ours).
async fn build_frontend(docker: &Docker, meta: &BuildMeta, nginx: &str, extra_tags: &[String]) -> Result<Built> {
    let dockerfile = crate::paths::docker_dir().join("Dockerfile.frontend");
    let dirs = [
        (crate::paths::docker_dir().join("frontend"), "docker/frontend".to_string()),
        (crate::paths::frontend(), "services/frontend".to_string()),
    ];
    let context =
        local_deps::context_tar(tar::Builder::new(Vec::new()), &dirs, &dockerfile, "docker/Dockerfile.frontend")?;
    let tags = local_tags(FRONTEND_REPOSITORY, &meta.tags(extra_tags), Platform::host()?, Platform::host()?);
    let labels: HashMap<String, String> =
        meta.labels("weknora-frontend", "weknora web UI: nginx serving the UI and proxying /api").into_iter().collect();
    let args = HashMap::from([("NGINX_IMAGE".to_string(), nginx.to_string())]);
    eprintln!("==> building {} on {nginx}", tags[0]);
    local_deps::build_dockerfile(docker, &tags[0], "docker/Dockerfile.frontend", context, &args, &labels).await?;
    for tag in &tags[1..] {
        let (repo, t) = tag.rsplit_once(':').expect("a tag");
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(t).build();
        docker.tag_image(&tags[0], Some(opts)).await.with_context(|| format!("tagging {tag}"))?;
    }
    let inspect = docker.inspect_image(&tags[0]).await?;
    Ok(Built {
        image: FRONTEND_REPOSITORY.to_string(),
        platform: Platform::host()?.docker().to_string(),
        id: inspect.id.unwrap_or_default(),
        tags,
        size_bytes: inspect.size.unwrap_or_default(),
    })
}

/// What cargo metadata says about the workspace.
pub struct Workspace {
    pub version: String,
    pub repository: String,
    pub target_dir: PathBuf,
}

impl Workspace {
    pub fn read() -> Result<Workspace> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .no_deps()
            .exec()
            .context("running `cargo metadata` to find the services' binaries and versions")?;
        let bins: Vec<(&str, &cargo_metadata::Package)> = metadata
            .workspace_packages()
            .into_iter()
            .flat_map(|p| p.targets.iter().filter(|t| t.is_bin()).map(move |t| (t.name.as_str(), p)))
            .collect();
        let package_of = |bin: &str| {
            bins.iter()
                .find(|(name, _)| *name == bin)
                .map(|(_, p)| *p)
                .with_context(|| format!("no workspace package builds the binary `{bin}`"))
        };
        let app = package_of(APP.binary)?;
        package_of(DOCREADER.binary)?;
        let repository = app.repository.clone().filter(|r| !r.is_empty()).context(
            "services/app/Cargo.toml has no `repository` (the images' source label): set `repository.workspace = true`",
        )?;
        Ok(Workspace {
            version: app.version.to_string(),
            repository,
            target_dir: metadata.target_directory.into_std_path_buf(),
        })
    }

    /// Where cargo leaves a service's binary for a platform.
    pub fn binary(&self, service: &RustService, platform: Platform) -> PathBuf {
        self.target_dir.join(platform.rust_target()).join("release").join(service.binary)
    }
}

/// The compiler flags of image builds: static glibc, and no machine-specific paths in the
/// binaries (the checkout, cargo's home and the target folder are remapped), so the same
/// commit gives the same bytes anywhere.
pub fn rustflags(workspace: &Workspace) -> String {
    let root = crate::paths::project_root();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    // When several prefixes match, rustc applies the last: the target folder may sit inside the checkout.
    [
        "-Ctarget-feature=+crt-static".to_string(),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/weknora", root.display()),
        format!("--remap-path-prefix={}=/target", workspace.target_dir.display()),
    ]
    .join("\x1f")
}

/// Every release binary: the services' and the operator's. They are always compiled
/// together, so that their shared dependencies resolve to one set of features and images
/// and bundles reuse one build (and `weknora` is the same binary whoever builds it).
pub const RELEASE_PACKAGES: [&str; 3] = ["weknora-app", "weknora-docreader", "weknora-operator"];

/// The release compile `start` began ahead of time (`compile_ahead`), which `cargo_build`
/// waits for before its own (then quick) run.
static AHEAD: std::sync::Mutex<Option<std::process::Child>> = std::sync::Mutex::new(None);

/// Starts the host platform's release compile in the background and returns at once, so
/// that what does not need the binaries (the third-party images) is made meanwhile.
pub fn compile_ahead(workspace: &Workspace, meta: &BuildMeta) -> Result<()> {
    let host = Platform::host()?;
    eprintln!("==> compiling {} for {} (in the background)", RELEASE_PACKAGES.join(", "), host.docker());
    let child = cargo_command(workspace, meta, host, host).spawn().context("running cargo")?;
    *AHEAD.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    Ok(())
}

/// Stops a compile started ahead, when the command that started it fails before using it.
pub fn abandon_ahead() {
    if let Some(mut child) = AHEAD.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Builds the release binaries for one platform with the pinned toolchain, static and
/// reproducible (`rustflags`).
pub fn cargo_build(workspace: &Workspace, meta: &BuildMeta, platform: Platform, host: Platform) -> Result<()> {
    let ahead = AHEAD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut child) = ahead {
        // Its outcome shows in cargo's output; the run below is then quick, or says why.
        eprintln!("==> waiting for the compile started ahead");
        child.wait().context("waiting for cargo")?;
    }
    eprintln!("==> compiling {} for {}", RELEASE_PACKAGES.join(", "), platform.docker());
    let status = cargo_command(workspace, meta, platform, host).status().context("running cargo")?;
    if !status.success() {
        bail!(
            "compiling for {} failed (see cargo's output above); for linux/arm64 run `cargo xtask doctor --fix --dev` \
             to install the cross linker and target",
            platform.docker()
        );
    }
    Ok(())
}

fn cargo_command(workspace: &Workspace, meta: &BuildMeta, platform: Platform, host: Platform) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", platform.rust_target()]);
    for p in RELEASE_PACKAGES {
        cmd.args(["--package", p]);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags(workspace));
    cmd.envs(meta.build_env());
    if let Some((var, linker)) = platform.linker_env(host) {
        cmd.env(var, linker);
    }
    // cargo reports on stderr; stdout stays for our result.
    cmd.stdout(std::process::Stdio::null());
    cmd
}

/// Tags an image gets in Docker: the host platform's image the plain tags, the others
/// `<tag>-<arch>` (Docker keeps one image per tag).
pub fn local_tags(repository: &str, tags: &[String], platform: Platform, host: Platform) -> Vec<String> {
    let suffix = if platform == host { String::new() } else { format!("-{}", platform.arch()) };
    tags.iter().map(|t| format!("{repository}:{t}{suffix}")).collect()
}

/// Writes one service's image archive for one platform and loads it into Docker.
async fn load_service_image(
    docker: &Docker,
    service: &RustService,
    binary: &Path,
    meta: &BuildMeta,
    platform: Platform,
    host: Platform,
    extra_tags: &[String],
) -> Result<Built> {
    let epoch = u64::try_from(meta.epoch)?;
    let layer = archive::layer_tar(&service.entries(binary)?, epoch)?;
    let runtime = service.runtime(meta.labels(service.binary, service.description));
    let config =
        archive::config_json(&runtime, platform.arch(), platform.variant(), &meta.created, &archive::digest(&layer));
    let id = archive::digest(&config);
    let tags = local_tags(service.repository, &meta.tags(extra_tags), platform, host);
    let image = archive::image_archive(&config, &layer, &tags, epoch)?;
    eprintln!("==> loading {} ({}, {:.1} MB)", tags[0], platform.docker(), layer.len() as f64 / 1e6);
    let mut stream = docker.import_image(
        ImportImageOptionsBuilder::default().quiet(true).build(),
        bollard::body_full(image.into()),
        None,
    );
    while let Some(msg) = stream.next().await {
        msg.with_context(|| format!("Docker refused the image archive of {}", tags[0]))?;
    }
    let inspect = docker.inspect_image(&tags[0]).await.with_context(|| format!("inspecting {}", tags[0]))?;
    let loaded = inspect.id.unwrap_or_default();
    if loaded != id {
        bail!("Docker stored {} as {loaded}, not {id}: the daemon rewrote the image config", tags[0]);
    }
    Ok(Built {
        image: service.repository.to_string(),
        platform: platform.docker().to_string(),
        id,
        tags,
        size_bytes: inspect.size.unwrap_or_default(),
    })
}

/// Writes `DIR/<service>-<arch>/` contexts for `docker build -f Dockerfile DIR/...`.
fn write_contexts(dir: &Path, workspace: &Workspace, services: &[RustService], platforms: &[Platform]) -> Result<()> {
    for service in services {
        for p in platforms {
            let ctx = dir.join(format!("{}-{}", service.name, p.arch()));
            std::fs::create_dir_all(&ctx).with_context(|| format!("creating {}", ctx.display()))?;
            for (name, source) in service.context_files(&workspace.binary(service, *p)) {
                let dest = ctx.join(&name);
                match source {
                    Some(src) => {
                        std::fs::copy(&src, &dest)
                            .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
                    }
                    None => std::fs::create_dir_all(&dest)?,
                }
            }
            println!("{}", ctx.display());
            eprintln!("    docker build --platform {} -t {}:dev {}", p.docker(), service.repository, ctx.display());
        }
    }
    Ok(())
}

fn report(built: &[Built], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(built)?);
        return Ok(());
    }
    for b in built {
        let short = b.id.strip_prefix("sha256:").unwrap_or(&b.id);
        println!(
            "{:<40} {:<12} {:.12} {:>7.1} MB",
            b.tags.first().map(String::as_str).unwrap_or(&b.image),
            b.platform,
            short,
            b.size_bytes as f64 / 1e6
        );
    }
    Ok(())
}

/// Docker's rule for tags: up to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!(
            "`{tag}` is not a valid image tag: use up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        );
    }
    Ok(())
}

/// `--clean`: containers using our images, the images, our dangling layers.
async fn clean(repositories: &[&str], yes: bool, dry_run: bool, json: bool) -> Result<ExitCode> {
    if !yes && !dry_run {
        bail!("--clean removes containers and images: add --yes to go ahead, or --dry-run to see what it would remove");
    }
    let docker = docker::connect().await?;
    let mut images = Vec::new();
    for repo in repositories {
        let filters = HashMap::from([("reference".to_string(), vec![repo.to_string()])]);
        let list = docker.list_images(Some(ListImagesOptionsBuilder::default().filters(&filters).build())).await?;
        images.extend(list.into_iter().map(|i| i.id));
    }
    images.sort();
    images.dedup();
    let mut containers = Vec::new();
    for id in &images {
        let filters = HashMap::from([("ancestor".to_string(), vec![id.clone()])]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        for c in docker.list_containers(Some(opts)).await? {
            containers.extend(c.id);
        }
    }
    containers.sort();
    containers.dedup();
    if dry_run {
        let plan = serde_json::json!({ "containers": containers, "images": images });
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            for c in &containers {
                println!("would remove container {c:.12}");
            }
            for i in &images {
                println!("would remove image {i}");
            }
            println!("would prune dangling images labelled as ours");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for c in &containers {
        eprintln!("==> removing container {c:.12}");
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        docker.remove_container(c, Some(opts)).await.with_context(|| format!("removing container {c}"))?;
    }
    // Dangling layers first: an image built on one of ours and then untagged (a rebuilt
    // `FROM weknora/app` image) is a child that would keep its parent from being removed.
    let workspace = Workspace::read()?;
    let filters = HashMap::from([
        ("dangling".to_string(), vec!["true".to_string()]),
        ("label".to_string(), vec![format!("org.opencontainers.image.source={}", workspace.repository)]),
    ]);
    let pruned = docker.prune_images(Some(PruneImagesOptionsBuilder::default().filters(&filters).build())).await?;
    remove_children_first(&docker, &images).await?;
    let reclaimed = pruned.space_reclaimed.unwrap_or_default();
    let result = serde_json::json!({ "containers": containers, "images": images, "reclaimed_bytes": reclaimed });
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "removed {} containers, {} images; pruned {:.1} MB of dangling layers",
            containers.len(),
            images.len(),
            reclaimed as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `images`, retrying those that have children among the others until a round
/// removes nothing: then the children are someone else's, which the error names.
async fn remove_children_first(docker: &bollard::Docker, images: &[String]) -> Result<()> {
    let mut left: Vec<&String> = images.iter().collect();
    while !left.is_empty() {
        let mut blocked = Vec::new();
        let mut last_error = None;
        for i in left.iter().copied() {
            eprintln!("==> removing image {i}");
            let opts = RemoveImageOptionsBuilder::default().force(true).build();
            match docker.remove_image(i, Some(opts), None).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("dependent child images") => {
                    blocked.push(i);
                    last_error = Some(e);
                }
                Err(e) => return Err(e).with_context(|| format!("removing image {i}")),
            }
        }
        if blocked.len() == left.len() {
            let e = last_error.expect("a blocked image has its error");
            return Err(e).with_context(|| {
                format!(
                    "removing image {}: images not made by weknora are built on it (they are among \
                     `docker images --filter since={}`); remove them first",
                    blocked[0], blocked[0]
                )
            });
        }
        left = blocked;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_image_gets_plain_tags_the_others_an_arch_suffix() {
        let tags = vec!["0.1.0".to_string(), "0.1.0-0123456789ab".to_string()];
        assert_eq!(
            local_tags("weknora/app", &tags, Platform::Amd64, Platform::Amd64),
            ["weknora/app:0.1.0", "weknora/app:0.1.0-0123456789ab"]
        );
        assert_eq!(
            local_tags("weknora/app", &tags, Platform::Arm64, Platform::Amd64),
            ["weknora/app:0.1.0-arm64", "weknora/app:0.1.0-0123456789ab-arm64"]
        );
    }

    #[test]
    fn tags_follow_dockers_rule() {
        for ok in ["latest", "v1.2.3", "0.1.0-abc_def"] {
            check_tag(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a:b", "a/b", &"x".repeat(129)] {
            let err = check_tag(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid image tag"), "{err}");
        }
    }

    #[test]
    fn nothing_named_means_all_our_images() {
        let parse = |args: &[&str]| {
            #[derive(clap::Parser)]
            struct Wrap {
                #[command(flatten)]
                b: BuildImages,
            }
            let mut argv = vec!["build-images"];
            argv.extend_from_slice(args);
            <Wrap as clap::Parser>::try_parse_from(argv).map(|w| w.b)
        };
        let names = |b: &BuildImages| b.services().iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(&parse(&[]).unwrap()), ["app", "docreader"]);
        assert_eq!(names(&parse(&["--docreader"]).unwrap()), ["docreader"]);
        assert_eq!(names(&parse(&["--all"]).unwrap()), ["app", "docreader"]);
        assert!(names(&parse(&["--local-deps"]).unwrap()).is_empty());
        assert!(parse(&["--yes"]).is_err(), "--yes belongs to --clean");
        assert!(parse(&["--clean", "--push", "127.0.0.1:5000"]).is_err());
    }

    #[test]
    fn image_binaries_are_static_and_free_of_local_paths() {
        let ws = Workspace { version: "0.1.0".into(), repository: String::new(), target_dir: "/w/target".into() };
        let flags: Vec<String> = rustflags(&ws).split('\x1f').map(str::to_string).collect();
        assert_eq!(flags[0], "-Ctarget-feature=+crt-static");
        assert_eq!(flags.last().unwrap(), "--remap-path-prefix=/w/target=/target");
        assert!(flags.iter().any(|f| f.ends_with("=/weknora")));
    }
}
