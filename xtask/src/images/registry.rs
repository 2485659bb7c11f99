//! `--push REGISTRY`: every platform's image goes up as `<tag>-<arch>`, then one manifest
//! list per tag joins them, so `docker pull REGISTRY/weknora/app:<tag>` picks the right
//! platform. Pushing goes through the docker CLI, the one place that knows the user's
//! `docker login` credentials and credential helpers; tagging goes through bollard.

use std::process::Command;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::TagImageOptionsBuilder;

use super::Built;

/// `host[:port]` from what the user typed; a scheme or a path is an error with the fix.
pub fn normalize(registry: &str) -> Result<String> {
    let r = registry.trim().trim_end_matches('/');
    if r.contains("://") {
        bail!("--push takes a registry as host[:port], e.g. 127.0.0.1:5000, not a URL (`{registry}`)");
    }
    if r.is_empty() || r.contains('/') || r.contains(char::is_whitespace) {
        bail!("--push takes a registry as host[:port], e.g. 127.0.0.1:5000 (got `{registry}`)");
    }
    Ok(r.to_string())
}

/// Registries on this machine speak plain HTTP; the docker CLI needs `--insecure` for them.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// The per-platform reference that a manifest list points to.
pub fn platform_ref(registry: &str, repository: &str, tag: &str, arch: &str) -> String {
    format!("{registry}/{repository}:{tag}-{arch}")
}

fn docker_cli(args: &[&str]) -> Result<()> {
    let out = Command::new("docker").args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}

/// Pushes one repository's images (one per platform) and the manifest list of each tag.
pub async fn push(docker: &Docker, registry: &str, repository: &str, images: &[&Built], tags: &[String]) -> Result<()> {
    let insecure = is_loopback(registry);
    for tag in tags {
        let mut refs = Vec::new();
        for image in images {
            let arch = image.platform.rsplit('/').next().unwrap_or(&image.platform);
            let target = platform_ref(registry, repository, tag, arch);
            let (repo, tag_part) = target.rsplit_once(':').expect("a reference has a tag");
            let opts = TagImageOptionsBuilder::default().repo(repo).tag(tag_part).build();
            docker.tag_image(&image.id, Some(opts)).await.with_context(|| format!("tagging {target}"))?;
            eprintln!("==> pushing {target}");
            docker_cli(&["push", "--quiet", &target]).with_context(|| {
                format!("pushing to {registry}: is it running, and are you logged in (`docker login {registry}`)?")
            })?;
            refs.push(target);
        }
        let list = format!("{registry}/{repository}:{tag}");
        eprintln!("==> manifest list {list} ({} platforms)", refs.len());
        let mut create = vec!["manifest", "create", "--amend"];
        if insecure {
            create.push("--insecure");
        }
        create.push(&list);
        create.extend(refs.iter().map(String::as_str));
        docker_cli(&create)?;
        let mut push = vec!["manifest", "push", "--purge"];
        if insecure {
            push.push("--insecure");
        }
        push.push(&list);
        docker_cli(&push)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_host_and_port() {
        assert_eq!(normalize("127.0.0.1:5000/").unwrap(), "127.0.0.1:5000");
        assert_eq!(normalize("registry.example.com").unwrap(), "registry.example.com");
        assert!(normalize("http://127.0.0.1:5000").unwrap_err().to_string().contains("not a URL"));
        assert!(normalize("127.0.0.1:5000/team").is_err());
        assert!(normalize(" ").is_err());
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com:443"));
    }

    #[test]
    fn platform_refs_carry_the_arch() {
        assert_eq!(
            platform_ref("127.0.0.1:5000", "weknora/app", "0.1.0", "arm64"),
            "127.0.0.1:5000/weknora/app:0.1.0-arm64"
        );
    }
}
