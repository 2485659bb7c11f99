//! The images a start runs: ours from the front end's [`crate::host::Images`] (built from a
//! checkout, or imported from a bundle), the third-party ones from the source `.env`
//! records (IMAGE_SOURCE), never another database engine under an existing database.

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::compose::Stack;
use crate::containers::containers;
use crate::dotenv::{self, Vars};
use crate::paths;
use crate::third_party::{self, Resolver, Source, ThirdParty};

/// Picks every third-party image of the active services from the source `.env` records
/// (IMAGE_SOURCE: upstream or the local stand-ins); the first start chooses and records it.
/// Refuses to run another database engine on the database this project already has.
pub async fn resolve_images(docker: &Docker, stack: &mut Stack, services: &[String]) -> Result<()> {
    let vars = Vars::load();
    let recorded = Source::parse(vars.get("IMAGE_SOURCE"))?;
    // A stack from before IMAGE_SOURCE existed keeps what its database runs on.
    let running = containers(docker, &stack.project).await?.into_iter().find(|c| c.service == "postgres");
    let carried = Source::parse(crate::host::host().images.release()?.image_source.as_deref())?;
    let given = recorded.or(running.as_ref().map(|c| Source::of(&c.image))).or(carried);
    let mut resolver = Resolver::new(docker, given);
    let active: Vec<ThirdParty> =
        third_party::SERVICES.into_iter().filter(|tp| services.iter().any(|s| s == tp.service)).collect();
    for tp in active {
        let image = resolver.image(&tp, vars.get(tp.env)).await?;
        if let Some(old) =
            running.as_ref().filter(|c| tp.service == "postgres" && Source::of(&c.image) != Source::of(&image))
        {
            bail!(
                "the database of project {} runs on {}; {image} is another engine (other extensions), and start never \
                 swaps the engine under a database. To move: `cargo xtask backup`, `cargo xtask stop --volumes --yes`, \
                 set IMAGE_SOURCE (or POSTGRES_IMAGE) in .env, `cargo xtask start`, `cargo xtask restore <backup> --yes`",
                stack.project,
                old.image
            );
        }
        stack.env.push((tp.env.to_string(), image));
    }
    if let (None, Some(chosen)) = (recorded, resolver.chosen) {
        record_image_source(chosen)?;
    }
    Ok(())
}

/// Writes the first start's choice of image source into `.env`.
fn record_image_source(source: Source) -> Result<()> {
    let path = paths::env_file();
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let why = crate::host::in_host_words(&format!(
        "the first `cargo xtask start` at {}: where the third-party images come from (upstream: their \
         registries; local: stand-ins built here or carried by the bundle). start never switches by itself; see \
         docs/operations.md",
        crate::utc::rfc3339(crate::utc::now())
    ));
    std::fs::write(&path, dotenv::pin(&text, "IMAGE_SOURCE", source.name(), &why))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("==> recorded IMAGE_SOURCE={} in {}", source.name(), path.display());
    Ok(())
}

/// Starts on our images of `wanted` ([`crate::host::Images::begin_ours`]) before the third-party
/// ones are resolved; nothing for a pinned WEKNORA_VERSION (its images are never built).
pub async fn begin_ours(docker: &Docker, stack: &Stack, wanted: &[&str], no_build: bool) -> Result<()> {
    let images = &crate::host::host().images;
    if stack.version() != images.release()?.version {
        return Ok(());
    }
    images.begin_ours(docker, wanted, no_build).await
}

/// The repository compose runs for our service `name`: the variable weknora-stack-spec
/// names for it (APP_IMAGE, DOCREADER_IMAGE, FRONTEND_IMAGE) when set and not empty, else
/// the spec's repository (`weknora/app`, ...).
pub fn repository(vars: &Vars, name: &str) -> String {
    let service = weknora_stack_spec::service(name).unwrap_or_else(|| panic!("{name} is no service of the stack"));
    let ours = service.repository().unwrap_or_else(|| panic!("{name} is not built here"));
    vars.get(service.image_var()).filter(|r| !r.is_empty()).unwrap_or(ours).to_string()
}

/// Makes our images of `wanted` present: a WEKNORA_VERSION other than the release's pins
/// images built elsewhere (or kept by `upgrade`), which must exist and are never built;
/// otherwise the host's [`crate::host::Images`] builds or imports them (with `rebuild`, again).
pub async fn ensure_ours(docker: &Docker, stack: &Stack, wanted: &[&str], rebuild: bool, no_build: bool) -> Result<()> {
    let images = &crate::host::host().images;
    let release = images.release()?;
    if stack.version() == release.version {
        return images.ensure_ours(docker, wanted, rebuild, no_build).await;
    }
    let mut absent = Vec::new();
    let vars = Vars::load();
    for name in wanted {
        let image = format!("{}:{}", repository(&vars, name), stack.version());
        if docker.inspect_image(&image).await.is_err() {
            absent.push(image);
        }
    }
    if !absent.is_empty() {
        bail!(
            "WEKNORA_VERSION={} pins images that are not this release's ({}), and Docker lacks {}: load them \
             (`docker load`), or unset WEKNORA_VERSION to run this release's",
            stack.version(),
            release.version,
            absent.join(", ")
        );
    }
    Ok(())
}
