//! Release bundles: `weknora-<version>-linux-<arch>.tar.gz`, made by `cargo xtask dist`,
//! holding the `weknora` binary, the compose files, `.env.example`, config, migrations, the
//! runbook, `bundle.json` and, with `--images`, every image the stack runs as `docker save`
//! archives under `images/`. The `weknora` binary takes its images from here
//! ([`BundleImages`]): an image is imported when Docker lacks it or holds another build under
//! its tag, and only after its archive's SHA-256 matches the manifest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::digest::sha256_file;
use crate::host::{Images, Release};
use crate::paths;

/// `bundle.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    /// The full commit the bundle was made from.
    pub revision: String,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: String,
    /// What the third-party images in `images` are (`upstream` or `local`), recorded as
    /// IMAGE_SOURCE by the first start; None without images.
    pub image_source: Option<String>,
    pub images: Vec<ImageArchive>,
}

/// One `docker save` archive under `images/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageArchive {
    /// Relative to the bundle's root, e.g. `images/app.tar`.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// The image ID Docker gives it (`sha256:...`).
    pub id: String,
    /// The tags it is loaded under.
    pub tags: Vec<String>,
}

impl Manifest {
    pub fn read(root: &Path) -> Result<Manifest> {
        let path = root.join("bundle.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading {}: is {} an unpacked release bundle?", path.display(), root.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a bundle manifest", path.display()))
    }

    pub fn release(&self) -> Release {
        Release {
            version: self.version.clone(),
            revision: self.revision.clone(),
            dirty: false,
            image_source: self.image_source.clone(),
        }
    }

    fn archive_of(&self, image: &str) -> Option<&ImageArchive> {
        self.images.iter().find(|a| a.tags.iter().any(|t| t == image))
    }
}

/// Checks an archive against the manifest: present, same size, same SHA-256.
pub fn verify(root: &Path, archive: &ImageArchive) -> Result<()> {
    let path = root.join(&archive.file);
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("the bundle lacks {} (listed in bundle.json): unpack the bundle again", archive.file))?
        .len();
    let sum = if bytes == archive.bytes { sha256_file(&path)? } else { String::new() };
    if bytes != archive.bytes || sum != archive.sha256 {
        bail!(
            "{} is damaged: its SHA-256 is not the one bundle.json lists ({bytes} bytes, {} expected); nothing was \
             imported from it. Download and unpack the bundle again",
            archive.file,
            archive.bytes
        );
    }
    Ok(())
}

/// Verifies, then loads one archive.
async fn import(docker: &Docker, root: &Path, archive: &ImageArchive) -> Result<()> {
    verify(root, archive)?;
    eprintln!("==> importing {} ({:.1} MB)", archive.tags.join(", "), archive.bytes as f64 / 1e6);
    crate::docker::load_archive(docker, &root.join(&archive.file)).await?;
    Ok(())
}

/// The repository a bundle carries our service `name` under (weknora-stack-spec's).
fn ours_repository(name: &str) -> &'static str {
    weknora_stack_spec::service(name).and_then(|s| s.repository()).unwrap_or_else(|| panic!("{name} is not ours"))
}

/// Makes `image` the bundle's build of it: imported unless Docker already holds that build.
async fn ensure(docker: &Docker, root: &Path, manifest: &Manifest, image: &str) -> Result<()> {
    let Some(archive) = manifest.archive_of(image) else {
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        bail!(
            "Docker lacks {image} and this bundle carries no archive of it{}: load it with `docker load -i`, or use \
             a bundle made with `cargo xtask dist --images`",
            if manifest.images.is_empty() { " (it was made without images)" } else { "" }
        );
    };
    let held = docker.inspect_image(image).await.ok().and_then(|i| i.id);
    if held.as_deref() != Some(archive.id.as_str()) {
        import(docker, root, archive).await?;
    }
    Ok(())
}

/// The images of the bundle the running `weknora` binary belongs to; its manifest is read
/// at each use, so `upgrade --bundle` moves it on by replacing `bundle.json`.
pub struct BundleImages;

impl BundleImages {
    fn manifest() -> Result<Manifest> {
        Manifest::read(&paths::project_root())
    }
}

impl Images for BundleImages {
    fn release(&self) -> Result<Release> {
        Ok(Self::manifest()?.release())
    }

    fn ensure_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        _rebuild: bool,
        _no_build: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (root, manifest) = (paths::project_root(), Self::manifest()?);
            for name in wanted {
                ensure(docker, &root, &manifest, &format!("{}:{}", ours_repository(name), manifest.version)).await?;
            }
            for archive in &manifest.images {
                ensure(docker, &root, &manifest, &archive.tags[0]).await?;
            }
            Ok(())
        })
    }

    /// Every image the bundle carries, imported now.
    fn begin_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        _no_build: bool,
    ) -> BoxFuture<'a, Result<()>> {
        self.ensure_ours(docker, wanted, false, false)
    }

    fn ensure_local<'a>(&'a self, docker: &'a Docker, image: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { ensure(docker, &paths::project_root(), &Self::manifest()?, image).await })
    }

    fn ensure_dev<'a>(&'a self, _docker: &'a Docker, _image: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { bail!("development mode builds from a checkout: run `cargo xtask start --dev` there") })
    }

    /// This very binary: a bundle's `weknora` is static.
    fn operator_binary(&self) -> Result<std::path::PathBuf> {
        Ok(std::env::current_exe()?.canonicalize()?)
    }
}

/// A newer bundle unpacked next to the running one, verified, ready to take its place.
pub struct Staged {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// The files of a bundle that `upgrade --bundle` swaps (everything but the operator's own:
/// `.env`, backups, `previous/`).
const RELEASE_FILES: [&str; 9] = [
    "weknora",
    "bundle.json",
    "images",
    "docker-compose.yml",
    ".env.example",
    "config",
    "migrations",
    "docs",
    "README.md",
];

impl Staged {
    /// Unpacks `bundle` (a `.tar.gz`) beside the running release and verifies every
    /// archive; nothing of the running release changes.
    pub fn unpack(bundle: &Path) -> Result<Staged> {
        let root = paths::project_root();
        let dir = root.join(".incoming");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        eprintln!("==> unpacking {}", bundle.display());
        let file = std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(&dir)
            .with_context(|| format!("unpacking {}: is it a weknora release bundle (.tar.gz)?", bundle.display()))?;
        let mut entries = std::fs::read_dir(&dir)?.collect::<std::io::Result<Vec<_>>>()?;
        if entries.len() != 1 {
            bail!("{} does not hold one top-level folder, as release bundles do", bundle.display());
        }
        let top = entries.remove(0).path();
        let manifest = Manifest::read(&top)?;
        eprintln!("==> verifying {} image archives of weknora {}", manifest.images.len(), manifest.version);
        for archive in &manifest.images {
            verify(&top, archive)?;
        }
        Ok(Staged { dir: top, manifest })
    }

    /// Moves the running release's files into `previous/` and the staged ones in their place
    /// (renames within one file system: quick, whatever the images weigh).
    pub fn install(self) -> Result<()> {
        let root = paths::project_root();
        let previous = paths::previous_release();
        if previous.exists() {
            std::fs::remove_dir_all(&previous).with_context(|| format!("removing {}", previous.display()))?;
        }
        std::fs::create_dir_all(&previous)?;
        swap(&root, &previous, &self.dir)?;
        let _ = std::fs::remove_dir_all(root.join(".incoming"));
        eprintln!(
            "==> installed weknora {} in {} (the release before is in {})",
            self.manifest.version,
            root.display(),
            previous.display()
        );
        Ok(())
    }
}

/// Moves the release files of `root` into `keep`, and those of `from` into `root`.
fn swap(root: &Path, keep: &Path, from: &Path) -> Result<()> {
    for name in RELEASE_FILES {
        let (current, incoming) = (root.join(name), from.join(name));
        if current.exists() {
            std::fs::rename(&current, keep.join(name))
                .with_context(|| format!("moving {} aside", current.display()))?;
        }
        if incoming.exists() {
            std::fs::rename(&incoming, &current).with_context(|| format!("installing {}", current.display()))?;
        }
    }
    Ok(())
}

/// `rollback` after `upgrade --bundle`: the release in `previous/` takes its place again
/// (and the one it replaces goes to `previous/`).
pub fn restore_previous() -> Result<bool> {
    let (root, previous) = (paths::project_root(), paths::previous_release());
    if !previous.join("bundle.json").exists() {
        return Ok(false);
    }
    let aside = root.join(".incoming");
    if aside.exists() {
        std::fs::remove_dir_all(&aside)?;
    }
    std::fs::create_dir_all(&aside)?;
    swap(&root, &aside, &previous)?;
    std::fs::remove_dir_all(&previous)?;
    std::fs::rename(&aside, &previous)?;
    Ok(true)
}

#[derive(clap::Args)]
pub struct Bundle {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// What this bundle is: version, commit, platform, images.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Check every image archive against bundle.json's SHA-256.
    Verify,
    /// Import every image the bundle carries that Docker lacks (start does this by itself).
    Import,
}

impl Bundle {
    pub fn run(self) -> Result<ExitCode> {
        let root = paths::project_root();
        let manifest = Manifest::read(&root)?;
        match self.action {
            Action::Info { json } => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&manifest)?);
                } else {
                    println!("weknora {} ({}, commit {})", manifest.version, manifest.platform, manifest.revision);
                    for a in &manifest.images {
                        println!("  {:<44} {:>8.1} MB  {}", a.tags.join(", "), a.bytes as f64 / 1e6, a.file);
                    }
                }
            }
            Action::Verify => {
                for a in &manifest.images {
                    verify(&root, a)?;
                    eprintln!("ok {}", a.file);
                }
                println!("{} image archives match bundle.json", manifest.images.len());
            }
            Action::Import => crate::host::runtime()?.block_on(async {
                let docker = crate::docker::connect_for_transfers().await?;
                for a in &manifest.images {
                    for tag in &a.tags {
                        ensure(&docker, &root, &manifest, tag).await?;
                    }
                }
                println!("Docker holds the {} images of weknora {}", manifest.images.len(), manifest.version);
                anyhow::Ok(())
            })?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
