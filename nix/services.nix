# What each image declares: entrypoint, user, ports, healthcheck, working folder and the
# label keys. Plain data (no nixpkgs), so that nix/images.nix builds from it and xtask's
# tests compare it with docker/Dockerfile.* (`nix-instantiate --eval --strict --json
# nix/services.nix`): a change on one side only fails the tests.
let
  # The labels every image carries; the values come from the build (nix/images.nix) or
  # from `cargo xtask build-images`.
  labelKeys = [
    "org.opencontainers.image.title"
    "org.opencontainers.image.description"
    "org.opencontainers.image.version"
    "org.opencontainers.image.revision"
    "org.opencontainers.image.created"
    "org.opencontainers.image.source"
    "org.opencontainers.image.licenses"
    "io.github.weknora.toolchain"
  ];
  # Docker's Healthcheck timings are in nanoseconds.
  seconds = s: s * 1000000000;

  # app and docreader: a static binary in an empty image, run unprivileged, with the
  # binary as entrypoint and as healthcheck.
  rustService =
    {
      name,
      description,
      port,
      workdir,
      env ? { },
    }:
    let
      exe = "/usr/local/bin/weknora-${name}";
    in
    {
      repository = "weknora/${name}";
      title = "weknora-${name}";
      inherit description workdir labelKeys;
      binary = "weknora-${name}";
      entrypoint = [ exe ];
      cmd = null;
      user = "65532:65532";
      ports = [ "${toString port}/tcp" ];
      env = {
        PATH = "/usr/local/bin";
        SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt";
      }
      // env;
      healthcheck = {
        Test = [
          "CMD"
          exe
          "healthcheck"
        ];
        Interval = seconds 5;
        Timeout = seconds 5;
        StartPeriod = seconds 30;
        Retries = 3;
      };
    };
in
{
  app = rustService {
    name = "app";
    description = "weknora HTTP API: knowledge bases, documents, ingest, search";
    port = 8080;
    workdir = "/var/lib/weknora";
    env.WEKNORA_CONFIG = "/etc/weknora/config.yaml";
  };

  docreader = rustService {
    name = "docreader";
    description = "weknora document parser (gRPC): files and URLs to markdown";
    port = 50051;
    workdir = "/";
  };

  frontend = {
    repository = "weknora/frontend";
    title = "weknora-frontend";
    description = "weknora web UI: nginx serving the UI and proxying /api";
    binary = null;
    entrypoint = [ "/docker-entrypoint.sh" ];
    cmd = [ "nginx" "-c" "/etc/nginx/nginx.conf" "-g" "daemon off;" ];
    user = "101:101";
    ports = [ "8080/tcp" ];
    workdir = "/";
    env = {
      APP_HOST = "app";
      APP_PORT = "8080";
      APP_SCHEME = "http";
      NGINX_RESOLVER = "127.0.0.11";
      MAX_FILE_SIZE_MB = "50";
    };
    healthcheck = {
      Test = [ "CMD" "curl" "-fsS" "-o" "/dev/null" "http://127.0.0.1:8080/healthz" ];
      Interval = seconds 5;
      Timeout = seconds 5;
      StartPeriod = seconds 10;
      Retries = 3;
    };
    inherit labelKeys;
  };
}
