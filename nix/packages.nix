# The workspace's binaries, built by crane with the toolchain rust-toolchain.toml pins, and
# the web UI's files. One dependency build serves every package; the version and commit go
# only on the final packages, so a new commit does not rebuild the dependencies.
{
  pkgs,
  craneLib,
  build,
  root,
}:
let
  inherit (pkgs) lib;

  # Cargo sources plus what the crates read at compile time; .cargo/ stays out (its
  # cross-linker setting is for Debian hosts).
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (lib.fileset.difference (craneLib.fileset.commonCargoSources root) (root + "/.cargo"))
      (root + "/migrations")
      (root + "/config")
      (root + "/crates/docreader-proto/proto")
    ];
  };

  commonArgs = {
    inherit src;
    pname = "weknora";
    inherit (build) version;
    strictDeps = true;
    # Static binaries, as the Dockerfiles ship them: the images hold nothing else.
    buildInputs = [ pkgs.glibc.static ];
    CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
    cargoExtraArgs = "--locked -p weknora-app -p weknora-docreader -p weknora-operator";
    doCheck = false;
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # One package's binary (`program`, when it is not named after the package).
  service =
    name: program:
    craneLib.buildPackage (
      commonArgs
      // {
        inherit cargoArtifacts;
        pname = name;
        cargoExtraArgs = "--locked -p ${name}";
        env = build.env;
        meta.mainProgram = program;
      }
    );
in
{
  inherit src commonArgs cargoArtifacts;

  app = service "weknora-app" "weknora-app";
  docreader = service "weknora-docreader" "weknora-docreader";
  # The operator binary of release bundles (`cargo xtask dist` builds the same one).
  weknora = service "weknora-operator" "weknora";

  # The UI is plain files (no build step): the package is the folder nginx serves.
  frontend = pkgs.runCommand "weknora-frontend-${build.version}" { } ''
    mkdir -p $out/share
    cp -r ${root + "/services/frontend"} $out/share/weknora-frontend
  '';
}
