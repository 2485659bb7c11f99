//! `cargo xtask dist`: release bundles, `target/dist/weknora-<version>-linux-<arch>.tar.gz`.
//! One top-level folder holding the static `weknora` binary, what it runs the stack with
//! (compose file, `.env.example`, config, migrations), the runbook, `bundle.json`, and with
//! `--images` every image the stack runs as `docker save` archives. Two runs on one commit
//! write the same bytes: entries sorted, fixed times and owners, a gzip header without a
//! time, and Docker's archives, which are themselves deterministic.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use weknora_operator::bundle::{ImageArchive, Manifest};
use weknora_operator::compose::{OURS, profile_of};
use weknora_operator::digest::sha256_file;
use weknora_operator::dotenv::Vars;
use weknora_operator::host::Images;
use weknora_operator::third_party::{self, Resolver, Source};
use weknora_operator::{disk, docker};

use crate::images::checkout::CheckoutImages;
use crate::images::{BuildMeta, Platform, Workspace, cargo_build};
use crate::paths;

#[derive(clap::Args)]
pub struct Dist {
    /// Platforms, comma-separated: linux/amd64, linux/arm64 (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// Also carry every image the stack runs (this machine's platform only).
    #[arg(long)]
    images: bool,
    #[arg(long)]
    json: bool,
}

/// The files of the checkout a bundle carries, under the same names.
const FILES: [&str; 8] = [
    "docker-compose.yml",
    ".env.example",
    "config/config.yaml",
    "config/prometheus.yml",
    "config/alerts.yml",
    "docs/operations.md",
    "README.md",
    "LICENSE",
];

#[derive(Serialize)]
struct Written {
    path: PathBuf,
    platform: String,
    sha256: String,
    bytes: u64,
    images: usize,
}

impl Dist {
    pub fn run(self) -> Result<ExitCode> {
        let host = Platform::host()?;
        let platforms = match &self.platform {
            Some(list) => Platform::parse_list(list, host)?,
            None => vec![host],
        };
        if self.images && platforms.iter().any(|p| *p != host) {
            bail!(
                "--images carries this machine's images ({}); make the bundle of another platform on a machine of \
                 that platform, or drop --images",
                host.docker()
            );
        }
        let workspace = Workspace::read()?;
        let meta = BuildMeta::detect(&workspace.version, &workspace.repository)?;
        if meta.dirty {
            eprintln!("==> the checkout has uncommitted changes: this bundle is not a release of a commit");
        }
        let mut written = Vec::new();
        for platform in platforms {
            cargo_build(&workspace, &meta, platform, host)?;
            let binary = workspace.target_dir.join(platform.rust_target()).join("release/weknora");
            let name = format!("weknora-{}-linux-{}", workspace.version, platform.arch());
            let staging = tempfile::Builder::new().prefix("weknora-dist").tempdir_in(&workspace.target_dir)?;
            let top = staging.path().join(&name);
            let archives = if self.images {
                weknora_operator::host::runtime()?.block_on(save_images(&top))?
            } else {
                (None, Vec::new())
            };
            let manifest = Manifest {
                version: workspace.version.clone(),
                revision: meta.revision(),
                platform: platform.docker().to_string(),
                image_source: archives.0.map(|s: Source| s.name().to_string()),
                images: archives.1,
            };
            let out = paths::dist().join(format!("{name}.tar.gz"));
            write_bundle(&out, &name, &top, &binary, &manifest, meta.epoch)?;
            written.push(Written {
                sha256: sha256_file(&out)?,
                bytes: std::fs::metadata(&out)?.len(),
                path: out,
                platform: platform.docker().to_string(),
                images: manifest.images.len(),
            });
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&written)?);
        } else {
            for w in &written {
                println!("{}  {:.1} MB  sha256 {}", w.path.display(), w.bytes as f64 / 1e6, w.sha256);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Saves every image a default stack runs, plus the optional services' when Docker has
/// them, into `top/images/`; the third-party ones are the source `.env` records (or the one
/// the first start would choose).
async fn save_images(top: &Path) -> Result<(Option<Source>, Vec<ImageArchive>)> {
    let docker = docker::connect_for_transfers().await?;
    let release = CheckoutImages.release()?;
    CheckoutImages.ensure_ours(&docker, &OURS, false, false).await?;
    let mut images: Vec<(String, String)> =
        OURS.iter().map(|s| (s.to_string(), format!("{}:{}", crate::images::repository(s), release.version))).collect();
    let vars = Vars::load();
    let mut resolver = Resolver::new(&docker, Source::parse(vars.get("IMAGE_SOURCE"))?);
    for tp in third_party::SERVICES {
        let optional = profile_of(tp.service).is_some() && tp.service != "embedder";
        if optional {
            let image = vars.get(tp.env).unwrap_or(tp.upstream);
            if docker.inspect_image(image).await.is_ok() {
                images.push((tp.service.to_string(), image.to_string()));
            } else {
                eprintln!("==> not carrying {} ({image}): Docker does not have it", tp.service);
            }
            continue;
        }
        images.push((tp.service.to_string(), resolver.image(&tp, vars.get(tp.env)).await?));
    }
    // The images are staged uncompressed, then packed next to them (they compress little).
    let mut bytes = 0;
    for (_, image) in &images {
        bytes += docker.inspect_image(image).await?.size.unwrap_or_default().max(0) as u64;
    }
    disk::ensure_free(top, bytes * 2, &format!("dist --images ({} of images)", disk::human_bytes(bytes)))?;
    std::fs::create_dir_all(top.join("images"))?;
    let mut archives = Vec::new();
    for (service, image) in images {
        let file = format!("images/{service}.tar");
        let path = top.join(&file);
        eprintln!("==> saving {image}");
        docker::save_images(&docker, &[&image], &path).await?;
        let id = docker.inspect_image(&image).await?.id.context("Docker gave no image ID")?;
        archives.push(ImageArchive {
            sha256: sha256_file(&path)?,
            bytes: std::fs::metadata(&path)?.len(),
            file,
            id,
            tags: vec![image],
        });
    }
    Ok((resolver.chosen, archives))
}

/// Writes the `.tar.gz`: the staged images, the binary, the checkout's files, the manifest,
/// all under `name/`, in a fixed order with fixed metadata.
fn write_bundle(out: &Path, name: &str, top: &Path, binary: &Path, manifest: &Manifest, epoch: i64) -> Result<()> {
    let root = paths::project_root();
    let mut entries: Vec<(String, PathBuf, u32)> = vec![(String::from("weknora"), binary.to_path_buf(), 0o755)];
    for file in FILES {
        entries.push((file.to_string(), root.join(file), 0o644));
    }
    for dir in ["migrations", "images"] {
        let base = if dir == "images" { top.to_path_buf() } else { root.clone() };
        let Ok(list) = std::fs::read_dir(base.join(dir)) else { continue };
        for entry in list {
            let entry = entry?;
            entries.push((format!("{dir}/{}", entry.file_name().to_string_lossy()), entry.path(), 0o644));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    std::fs::create_dir_all(out.parent().unwrap())?;
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    // Image layers compress little and weigh much: the fast level keeps `dist --images` quick.
    let level = if manifest.images.is_empty() { flate2::Compression::best() } else { flate2::Compression::fast() };
    let gz = flate2::GzBuilder::new().mtime(0).write(file, level);
    let mut tar = tar::Builder::new(gz);
    let header = |size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(u64::try_from(epoch).unwrap_or_default());
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    };
    let json = serde_json::to_vec_pretty(manifest)?;
    let mut h = header(json.len() as u64, 0o644);
    tar.append_data(&mut h, format!("{name}/bundle.json"), json.as_slice())?;
    for (path, source, mode) in entries {
        let mut f = std::fs::File::open(&source).with_context(|| format!("opening {}", source.display()))?;
        let mut h = header(f.metadata()?.len(), mode);
        tar.append_data(&mut h, format!("{name}/{path}"), &mut f).with_context(|| format!("packing {path}"))?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    std::fs::rename(&partial, out)?;
    Ok(())
}
