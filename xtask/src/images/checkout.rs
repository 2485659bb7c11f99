//! The operator's images from this checkout: ours built by `build-images` when missing or
//! of another commit, the local stand-ins built through Docker's build cache.

use anyhow::{Result, bail};
use bollard::Docker;
use futures_util::future::BoxFuture;
use weknora_operator::containers::image_revision;
use weknora_operator::dotenv::Vars;
use weknora_operator::host::{Images, Release};

use std::path::PathBuf;

use super::{BuildImages, BuildMeta, LOCAL_DEPS, Platform, Workspace, local_deps};

pub struct CheckoutImages;

fn meta() -> Result<BuildMeta> {
    let workspace = Workspace::read()?;
    BuildMeta::detect(&workspace.version, &workspace.repository)
}

fn version() -> Result<String> {
    Ok(Workspace::read()?.version)
}

/// Those of `wanted` whose image Docker lacks or has of another commit.
async fn missing<'a>(docker: &Docker, meta: &BuildMeta, wanted: &[&'a str]) -> Result<Vec<&'a str>> {
    let (revision, version) = (meta.revision(), version()?);
    let mut missing = Vec::new();
    for name in wanted {
        let built_from = image_revision(docker, &format!("{}:{version}", super::repository(name))).await;
        if built_from.as_deref() != Some(revision.as_str()) {
            missing.push(*name);
        }
    }
    Ok(missing)
}

impl Images for CheckoutImages {
    fn release(&self) -> Result<Release> {
        let meta = meta()?;
        Ok(Release { version: version()?, revision: meta.revision(), dirty: meta.dirty, image_source: None })
    }

    /// Builds the images Docker lacks or that were built from another commit, all of them
    /// when the checkout has uncommitted changes (cargo and Docker's cache make an
    /// unchanged one quick), or, with `rebuild`, the ones named.
    fn ensure_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        rebuild: bool,
        no_build: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let meta = meta()?;
            let mut missing = missing(docker, &meta, wanted).await?;
            if no_build && !missing.is_empty() {
                bail!(
                    "images {} are missing or were built from another commit: build them with `cargo xtask \
                     build-images` (or drop --no-build)",
                    missing.join(", ")
                );
            }
            if rebuild || (meta.dirty && !no_build) {
                missing = wanted.to_vec();
            }
            if missing.is_empty() {
                return Ok(());
            }
            eprintln!("==> building {}{}", missing.join(", "), if meta.dirty { " (uncommitted changes)" } else { "" });
            let has = |n: &str| missing.contains(&n);
            BuildImages::only(has("app"), has("docreader"), has("frontend")).execute().await?;
            Ok(())
        })
    }

    /// A release compile in the background when `ensure_ours` will build (as it decides).
    fn begin_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        no_build: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let meta = meta()?;
            if !no_build && (meta.dirty || !missing(docker, &meta, wanted).await?.is_empty()) {
                super::compile_ahead(&Workspace::read()?, &meta)?;
            }
            Ok(())
        })
    }

    /// Built every time: Docker's build cache makes that quick, and a stand-in never lags
    /// behind its Dockerfile.
    fn ensure_local<'a>(&'a self, docker: &'a Docker, image: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(dep) = LOCAL_DEPS.iter().find(|d| d.image == image) else {
                bail!("{image} is not one of the local images");
            };
            let mirror = Vars::load().get("APT_MIRROR").map(str::to_string);
            local_deps::build_one(docker, dep, &meta()?, mirror.as_deref()).await.map(|_| ())
        })
    }

    fn ensure_dev<'a>(&'a self, docker: &'a Docker, image: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { super::build_dev_image(docker, &meta()?, image).await })
    }

    /// The release build's `weknora` (the images' build makes it; compiled here when missing).
    fn operator_binary(&self) -> Result<PathBuf> {
        let workspace = Workspace::read()?;
        let host = Platform::host()?;
        let binary = workspace.target_dir.join(host.rust_target()).join("release").join("weknora");
        if !binary.exists() {
            super::cargo_build(&workspace, &meta()?, host, host)?;
        }
        Ok(binary)
    }
}
