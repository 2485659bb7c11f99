# `nix flake check`: the packages build, and clippy, rustfmt and the unit tests pass. The
# tests that need PostgreSQL, Redis or Docker run in `cargo xtask ci`, not in the sandbox.
{ craneLib, packages }:
let
  inherit (packages) commonArgs cargoArtifacts src;
in
{
  inherit (packages) app docreader;

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    }
  );

  fmt = craneLib.cargoFmt { inherit src; };

  tests = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "--lib --bins";
    }
  );
}
