# `nix develop`: the pinned Rust toolchain (with clippy and rustfmt) and the tools the
# runbook uses, so a new machine needs nothing else to work on weknora.
{ pkgs, craneLib }:
craneLib.devShell {
  packages = [
    pkgs.sqlx-cli
    pkgs.docker-compose
    pkgs.postgresql # psql, pg_dump
    pkgs.cargo-nextest
    pkgs.watchexec # hot reload outside containers
    pkgs.nixfmt
  ];
}
