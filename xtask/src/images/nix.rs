//! `build-images --nix`: the same images built through the flake (`nix build
//! .#packages.<system>.<service>-image`, see nix/images.nix), then loaded into Docker
//! through bollard like xtask's own archives.

use std::process::Command;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::StreamExt;

use super::{Built, Platform};
use weknora_operator::process::on_path;

/// The Nix system that builds images for `platform`.
pub fn system(platform: Platform) -> &'static str {
    match platform {
        Platform::Amd64 => "x86_64-linux",
        Platform::Arm64 => "aarch64-linux",
    }
}

/// The flake output of one service's image, e.g. `.#packages.x86_64-linux.app-image`.
pub fn attribute(service: &str, platform: Platform) -> String {
    format!(".#packages.{}.{service}-image", system(platform))
}

/// `nix` with flakes switched on for this call only (no nix.conf change needed).
fn nix() -> Result<Command> {
    if !on_path("nix") {
        bail!(
            "Nix is not installed: `build-images --nix` builds the images through the flake \
             (`nix build .#app-image`). Install Nix >= 2.18 (https://nixos.org/download), or leave \
             out --nix: `cargo xtask build-images` builds the same images with cargo"
        );
    }
    let mut command = Command::new("nix");
    command.args(["--extra-experimental-features", "nix-command flakes"]).current_dir(crate::paths::project_root());
    Ok(command)
}

/// The oldest Nix the pinned nixpkgs evaluates with.
const NIX_MIN: (u32, u32) = (2, 18);

/// `(major, minor)` from `nix --version` ("nix (Nix) 2.18.1").
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().last()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Checks that a new enough Nix is there before anything is built.
pub fn ensure_installed() -> Result<()> {
    let out = nix()?.arg("--version").output().context("running nix --version")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_version(&text) {
        Some(v) if v >= NIX_MIN => Ok(()),
        _ => bail!(
            "{text} is too old for the flake: the pinned nixpkgs needs Nix >= {}.{}. Upgrade Nix \
             (https://nixos.org/download), or leave out --nix: `cargo xtask build-images` builds the \
             same images with cargo",
            NIX_MIN.0,
            NIX_MIN.1
        ),
    }
}

/// Builds each service's image for each platform with Nix and loads it into Docker.
pub async fn build(docker: &Docker, services: &[&str], platforms: &[Platform], host: Platform) -> Result<Vec<Built>> {
    let mut built = Vec::new();
    for service in services {
        for platform in platforms {
            let attribute = attribute(service, *platform);
            eprintln!("==> nix build {attribute}");
            let out = nix()?
                .args(["build", &attribute, "--no-link", "--print-out-paths", "--print-build-logs"])
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("running nix build")?;
            if !out.status.success() {
                let hint = if *platform == host {
                    String::new()
                } else {
                    format!(
                        ". Building for {} on this machine needs a builder for it: a remote builder, or \
                         qemu binfmt with `extra-platforms = {}` in nix.conf",
                        platform.docker(),
                        system(*platform)
                    )
                };
                bail!("`nix build {attribute}` failed (its output is above){hint}");
            }
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            built.push(load(docker, &path, service, *platform).await?);
        }
    }
    Ok(built)
}

/// Loads the image archive Nix wrote (gzipped docker-archive) and names what Docker stored.
async fn load(docker: &Docker, path: &str, service: &str, platform: Platform) -> Result<Built> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the image archive {path}"))?;
    let mut stream = docker.import_image(
        ImportImageOptionsBuilder::default().quiet(true).build(),
        bollard::body_full(bytes.into()),
        None,
    );
    let mut tag = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.with_context(|| format!("Docker refused the image archive {path}"))?;
        if let Some(loaded) = msg.stream.as_deref().and_then(|s| s.trim().strip_prefix("Loaded image: ")) {
            tag = Some(loaded.to_string());
        }
    }
    let tag = tag.with_context(|| format!("Docker loaded {path} but did not say under which name"))?;
    let inspect = docker.inspect_image(&tag).await.with_context(|| format!("inspecting {tag}"))?;
    eprintln!("==> loaded {tag} ({service}, {})", platform.docker());
    Ok(Built {
        image: tag.rsplit_once(':').map_or(tag.as_str(), |(repo, _)| repo).to_string(),
        platform: platform.docker().to_string(),
        id: inspect.id.unwrap_or_default(),
        tags: vec![tag],
        size_bytes: inspect.size.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_older_than_the_pinned_nixpkgs_needs_is_refused() {
        assert_eq!(parse_version("nix (Nix) 2.8.0"), Some((2, 8)));
        assert_eq!(parse_version("nix (Nix) 2.24.10"), Some((2, 24)));
        assert!(parse_version("nix (Nix) 2.8.0").unwrap() < NIX_MIN);
        assert!(parse_version("nix (Nix) 2.18.1").unwrap() >= NIX_MIN);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn each_platform_builds_on_its_nix_system() {
        assert_eq!(attribute("app", Platform::Amd64), ".#packages.x86_64-linux.app-image");
        assert_eq!(attribute("frontend", Platform::Arm64), ".#packages.aarch64-linux.frontend-image");
    }
}
