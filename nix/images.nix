# One OCI image per service, declared like docker/Dockerfile.*: the same entrypoint, user,
# ports, healthcheck, working folder, environment and labels (nix/services.json holds them,
# written by `cargo xtask codegen` from crates/stack-spec, as the Dockerfiles' tails are). `created` is the commit time, so two
# builds of one commit give the same image.
{
  pkgs,
  build,
  packages,
  services,
  root,
  toolchain,
}:
let
  inherit (pkgs) lib dockerTools;

  labels = spec: {
    "org.opencontainers.image.title" = spec.title;
    "org.opencontainers.image.description" = spec.description;
    "org.opencontainers.image.version" = build.version;
    "org.opencontainers.image.revision" = build.revision;
    "org.opencontainers.image.created" = build.created;
    "org.opencontainers.image.source" = "https://github.com/weknora/weknora";
    "org.opencontainers.image.licenses" = "MIT";
    "io.github.weknora.toolchain" = "rustc ${toolchain.version}";
  };

  config =
    spec: extraEnv:
    {
      Entrypoint = spec.entrypoint;
      User = spec.user;
      WorkingDir = spec.workdir;
      Env = lib.mapAttrsToList (k: v: "${k}=${v}") (spec.env // extraEnv);
      ExposedPorts = lib.genAttrs spec.ports (_: { });
      Healthcheck = spec.healthcheck;
      Labels = labels spec;
    }
    // lib.optionalAttrs (spec.cmd != null) { Cmd = spec.cmd; };

  image =
    spec: args:
    dockerTools.buildLayeredImage (
      {
        name = spec.repository;
        tag = build.version;
        inherit (build) created;
      }
      // args
    );

  # The CA bundle where the Dockerfiles put it.
  caBundle = pkgs.runCommand "weknora-ca-bundle" { } ''
    mkdir -p $out/etc/ssl/certs
    cp ${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt $out/etc/ssl/certs/ca-certificates.crt
  '';

  # A static binary at /usr/local/bin, plus the CA bundle: nothing else, as FROM scratch.
  rustImage =
    spec: package: files: fakeRootCommands:
    image spec {
      contents = [
        caBundle
        (pkgs.runCommand "${spec.title}-root" { } ''
          mkdir -p $out/usr/local/bin
          cp ${lib.getExe package} $out/usr/local/bin/${spec.binary}
          ${files}
        '')
      ];
      inherit fakeRootCommands;
      config = config spec { };
    };
in
{
  app-image = rustImage services.app packages.app ''
    mkdir -p $out/etc/weknora
    cp ${root + "/config/config.yaml"} $out/etc/weknora/config.yaml
  '' ''
    # The working folder; uploads go to ./data, where a volume is mounted.
    mkdir -p var/lib/weknora/data
    chown -R 65532:65532 var/lib/weknora
  '';

  docreader-image = rustImage services.docreader packages.docreader "" "";

  # nginx with the same configuration, entrypoint and UI files as docker/Dockerfile.frontend.
  frontend-image = image services.frontend {
    contents = [
      pkgs.busybox # /bin/sh and the tools docker/nginx/entrypoint.sh uses
      pkgs.gettext # envsubst
      pkgs.curl # the healthcheck
      pkgs.nginx
      caBundle
      (pkgs.runCommand "weknora-frontend-root" { } ''
        mkdir -p $out/etc/nginx/templates $out/usr/share/nginx
        cp ${root + "/docker/frontend/nginx.conf"} $out/etc/nginx/nginx.conf
        cp ${pkgs.nginx}/conf/mime.types $out/etc/nginx/mime.types
        cp ${root + "/docker/frontend/default.conf.template"} $out/etc/nginx/templates/default.conf.template
        cp -r ${packages.frontend}/share/weknora-frontend $out/usr/share/nginx/html
        install -m 0755 ${root + "/docker/nginx/entrypoint.sh"} $out/docker-entrypoint.sh
      '')
    ];
    fakeRootCommands = ''
      mkdir -p tmp etc/nginx/conf.d var/log/nginx
      chmod 1777 tmp
      chown 101:101 etc/nginx/conf.d var/log/nginx
    '';
    # The nginx base images set PATH; here it is said.
    config = config services.frontend { PATH = "/bin"; };
  };
}
