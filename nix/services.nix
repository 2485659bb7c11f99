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
in
{
  app = {
    repository = "weknora/app";
    title = "weknora-app";
    description = "weknora HTTP API: knowledge bases, documents, ingest, search";
    binary = "weknora-app";
    entrypoint = [ "/usr/local/bin/weknora-app" ];
    cmd = null;
    user = "65532:65532";
    ports = [ "8080/tcp" ];
    workdir = "/var/lib/weknora";
    env = {
      PATH = "/usr/local/bin";
      SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt";
      WEKNORA_CONFIG = "/etc/weknora/config.yaml";
    };
    healthcheck = {
      Test = [ "CMD" "/usr/local/bin/weknora-app" "healthcheck" ];
      Interval = seconds 10;
      Timeout = seconds 5;
      StartPeriod = seconds 30;
      Retries = 3;
    };
    inherit labelKeys;
  };

  docreader = {
    repository = "weknora/docreader";
    title = "weknora-docreader";
    description = "weknora document parser (gRPC): files and URLs to markdown";
    binary = "weknora-docreader";
    entrypoint = [ "/usr/local/bin/weknora-docreader" ];
    cmd = null;
    user = "65532:65532";
    ports = [ "50051/tcp" ];
    workdir = "/";
    env = {
      PATH = "/usr/local/bin";
      SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt";
    };
    healthcheck = {
      Test = [ "CMD" "/usr/local/bin/weknora-docreader" "healthcheck" ];
      Interval = seconds 10;
      Timeout = seconds 5;
      StartPeriod = seconds 30;
      Retries = 3;
    };
    inherit labelKeys;
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
      MAX_FILE_SIZE_MB = "50";
    };
    healthcheck = {
      Test = [ "CMD" "curl" "-fsS" "-o" "/dev/null" "http://127.0.0.1:8080/healthz" ];
      Interval = seconds 10;
      Timeout = seconds 5;
      StartPeriod = seconds 10;
      Retries = 3;
    };
    inherit labelKeys;
  };
}
