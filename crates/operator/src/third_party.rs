//! Third-party images: the pinned upstream image of each service, overridable by env
//! (POSTGRES_IMAGE, ...), or its local stand-in built from Debian packages. Which of the two
//! a stack runs is a choice recorded in `.env` (IMAGE_SOURCE), made by the first `start`:
//! upstream when a registry answers, else local. Once made, a failed pull is an error that
//! says what to do, never a silent switch. The pins are declared in weknora-stack-spec.

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use weknora_stack_spec as spec;

#[derive(Debug, Clone, Copy)]
pub struct ThirdParty {
    pub service: &'static str,
    /// The variable that overrides the image.
    pub env: &'static str,
    pub upstream: &'static str,
    /// The local stand-in's image (see LOCAL_IMAGES).
    pub local: Option<&'static str>,
}

impl ThirdParty {
    /// The local image a stack whose images come from `source` runs for this service: the
    /// stand-in under [`Source::Local`], and ours (the embedder) under either; None where
    /// it runs the upstream image.
    pub fn image_for(&self, source: Source) -> Option<&'static str> {
        self.local.filter(|local| *local == self.upstream || source == Source::Local)
    }
}

/// The local images: stand-ins for the third-party images built from Debian packages, for
/// sites without a registry (and this project's CI), and the bundled embedder, which no
/// registry offers. `cargo xtask build-images --local-deps` builds them; a bundle carries them.
/// The pins, variables and stand-ins are weknora-stack-spec's.
pub use spec::{LOCAL_IMAGES, NGINX_LOCAL, POSTGRES_LOCAL, PROMETHEUS_LOCAL, REDIS_LOCAL};
/// The bundled embedding model's image (the compose file names the same).
pub const EMBEDDER_IMAGE: &str = spec::EMBEDDER_IMAGE;

/// The third-party image of a service the stack spec declares.
const fn third_party(service: spec::Service) -> ThirdParty {
    match service.image {
        spec::Image::Pinned(pin) => {
            ThirdParty { service: service.name, env: pin.var, upstream: pin.upstream, local: pin.local }
        }
        spec::Image::Ours { .. } => panic!("a service of a pinned image"),
    }
}

pub const POSTGRES: ThirdParty = third_party(spec::POSTGRES);
pub const REDIS: ThirdParty = third_party(spec::REDIS);
/// The frontend image's base.
pub const NGINX: ThirdParty = ThirdParty {
    service: spec::FRONTEND.name,
    env: spec::NGINX_BASE.var,
    upstream: spec::NGINX_BASE.upstream,
    local: spec::NGINX_BASE.local,
};
pub const MINIO: ThirdParty = third_party(spec::MINIO);
pub const NEO4J: ThirdParty = third_party(spec::NEO4J);
pub const JAEGER: ThirdParty = third_party(spec::JAEGER);
/// The `monitoring` profile's Prometheus.
pub const PROMETHEUS: ThirdParty = third_party(spec::PROMETHEUS);

/// The bundled embedding model: no registry has it, so its "upstream" is the local image.
pub const EMBEDDER: ThirdParty = third_party(spec::EMBEDDER);

/// Every image not of this workspace that the compose files run.
pub const SERVICES: [ThirdParty; 7] = [
    third_party(spec::THIRD_PARTY[0]),
    third_party(spec::THIRD_PARTY[1]),
    third_party(spec::THIRD_PARTY[2]),
    third_party(spec::THIRD_PARTY[3]),
    third_party(spec::THIRD_PARTY[4]),
    third_party(spec::THIRD_PARTY[5]),
    third_party(spec::THIRD_PARTY[6]),
];

/// Where the third-party images come from (`IMAGE_SOURCE` in `.env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Pulled from their registries (or loaded into Docker).
    Upstream,
    /// The stand-ins built here from Debian packages, where there is no registry.
    Local,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Local => "local",
        }
    }

    /// IMAGE_SOURCE's value; None when unset (the first start chooses).
    pub fn parse(value: Option<&str>) -> Result<Option<Source>> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some("upstream") => Ok(Some(Source::Upstream)),
            Some("local") => Ok(Some(Source::Local)),
            Some(other) => bail!("IMAGE_SOURCE=`{other}` is neither upstream nor local (.env)"),
        }
    }

    /// Which source an image is of.
    pub fn of(image: &str) -> Source {
        if LOCAL_IMAGES.contains(&image) { Source::Local } else { Source::Upstream }
    }
}

/// Picks each third-party image: the override when set, else the image of the chosen
/// source. Undecided (no IMAGE_SOURCE yet): the upstream image when Docker has it or can
/// pull it, else the local stand-ins, and `chosen` says which it became. The first failed
/// pull is reported once; later images do not try the registry again. Stand-ins come from
/// the host's [`crate::host::Images`] each time they are picked (a checkout builds them through
/// Docker's build cache, a bundle imports them when missing).
pub struct Resolver<'a> {
    docker: &'a Docker,
    registry_error: Option<String>,
    /// The choice, once made (given, or made by the first image resolved).
    pub chosen: Option<Source>,
}

impl<'a> Resolver<'a> {
    pub fn new(docker: &'a Docker, source: Option<Source>) -> Resolver<'a> {
        Resolver { docker, registry_error: None, chosen: source }
    }

    async fn local(&self, image: &str) -> Result<String> {
        crate::host::host().images.ensure_local(self.docker, image).await?;
        Ok(image.to_string())
    }

    /// The image to use for `tp`; `chosen` is the override from env or `.env`, if any.
    pub async fn image(&mut self, tp: &ThirdParty, chosen: Option<&str>) -> Result<String> {
        if let Some(image) = chosen.filter(|c| !c.is_empty()) {
            if self.docker.inspect_image(image).await.is_ok() {
                return Ok(image.to_string());
            }
            if LOCAL_IMAGES.contains(&image) {
                return self.local(image).await;
            }
            if let Err(e) = self.pull(image).await {
                bail!("{} is set to {image}, which Docker does not have and cannot pull: {e}", tp.env);
            }
            return Ok(image.to_string());
        }
        if let Some(local) = tp.image_for(self.chosen.unwrap_or(Source::Upstream)) {
            // A stand-in of the chosen source, or ours: built here or imported.
            return self.local(local).await;
        }
        if self.docker.inspect_image(tp.upstream).await.is_ok() {
            self.chosen.get_or_insert(Source::Upstream);
            return Ok(tp.upstream.to_string());
        }
        if self.registry_error.is_none() {
            match self.pull(tp.upstream).await {
                Ok(()) => {
                    self.chosen.get_or_insert(Source::Upstream);
                    return Ok(tp.upstream.to_string());
                }
                Err(e) if self.chosen == Some(Source::Upstream) => bail!(
                    "{} cannot be pulled: {e}. This stack runs the upstream images (IMAGE_SOURCE=upstream in .env), \
                     and start never swaps them by itself. Where no registry is reachable: load the images with \
                     `docker load -i` (from a release bundle, or `docker save` on a machine that has them); or, \
                     for a stack whose database has no data yet, choose the local stand-ins: IMAGE_SOURCE=local \
                     (docs/operations.md, \"Images without a registry\")",
                    tp.upstream
                ),
                Err(e) => {
                    if self.chosen.is_none() {
                        eprintln!(
                            "==> no registry reachable ({e}): this stack will run the local stand-ins built from \
                             Debian packages (recorded as IMAGE_SOURCE=local in .env)"
                        );
                        self.chosen = Some(Source::Local);
                    }
                    self.registry_error = Some(e);
                }
            }
        }
        let Some(local) = tp.local else {
            bail!(
                "{} ({}) cannot be pulled ({}) and has no local stand-in: load it with `docker load`, or set {} to an image Docker has",
                tp.service,
                tp.upstream,
                self.registry_error.as_deref().unwrap_or("no registry"),
                tp.env
            );
        };
        self.local(local).await
    }

    async fn pull(&self, image: &str) -> std::result::Result<(), String> {
        eprintln!("==> pulling {image}");
        let opts = CreateImageOptionsBuilder::default().from_image(image).build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(msg) = stream.next().await {
            msg.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_picks_the_stand_ins_and_ours_always_runs_locally() {
        assert_eq!(POSTGRES.image_for(Source::Local), Some(POSTGRES_LOCAL));
        assert_eq!(POSTGRES.image_for(Source::Upstream), None);
        assert_eq!(EMBEDDER.image_for(Source::Upstream), Some(EMBEDDER_IMAGE));
        assert_eq!(MINIO.image_for(Source::Local), None, "no stand-in: the upstream image or nothing");
    }

    #[test]
    fn the_image_source_is_a_recorded_choice() {
        assert_eq!(Source::parse(None).unwrap(), None);
        assert_eq!(Source::parse(Some(" ")).unwrap(), None);
        assert_eq!(Source::parse(Some("local")).unwrap(), Some(Source::Local));
        assert_eq!(Source::parse(Some("upstream")).unwrap(), Some(Source::Upstream));
        assert!(Source::parse(Some("docker.io")).unwrap_err().to_string().contains("IMAGE_SOURCE=`docker.io`"));
        assert_eq!(Source::of("weknora/postgres-local:17"), Source::Local);
        assert_eq!(Source::of(POSTGRES.upstream), Source::Upstream);
        assert_eq!(Source::of("paradedb/paradedb:v0.19.0-pg17"), Source::Upstream, "another upstream version");
    }

    #[test]
    fn the_frontend_dockerfile_builds_on_the_pinned_nginx() {
        // (docker-compose.yml's images are written from the stack spec by `cargo xtask codegen`.)
        let dockerfile =
            std::fs::read_to_string(crate::paths::project_root().join("docker/Dockerfile.frontend")).unwrap();
        assert!(dockerfile.contains(&format!("ARG NGINX_IMAGE={}", NGINX.upstream)));
    }
}
