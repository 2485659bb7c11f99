{
  description = "weknora: document understanding and retrieval, and the tooling to run it";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    crane.url = "github:ipetkov/crane";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  # The wiring only; each concern lives in nix/ (see docs/operations.md, "Nix").
  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
    }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forEachSystem = f: nixpkgs.lib.genAttrs systems (system: f (perSystem system));

      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          toolchain = pkgs.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml;
          craneLib = (crane.mkLib pkgs).overrideToolchain (_: toolchain);
          build = import ./nix/build-info.nix {
            inherit self;
            inherit (nixpkgs) lib;
          };
          packages = import ./nix/packages.nix {
            inherit pkgs craneLib build;
            root = ./.;
          };
        in
        {
          inherit pkgs packages;
          images = import ./nix/images.nix {
            inherit
              pkgs
              build
              packages
              toolchain
              ;
            # Written by `cargo xtask codegen` from crates/stack-spec.
            services = builtins.fromJSON (builtins.readFile ./nix/services.json);
            root = ./.;
          };
          devShell = import ./nix/devshell.nix { inherit pkgs craneLib; };
          checks = import ./nix/checks.nix { inherit craneLib packages; };
        };
    in
    {
      packages = forEachSystem (s: {
        inherit (s.packages) app docreader frontend weknora;
        inherit (s.images) app-image docreader-image frontend-image;
        default = s.packages.app;
      });

      devShells = forEachSystem (s: {
        default = s.devShell;
      });

      checks = forEachSystem (s: s.checks);

      formatter = forEachSystem (s: s.pkgs.nixfmt);
    };
}
