# The facts every package and image is stamped with, taken from the flake itself: the
# workspace version, the commit (`self.rev`, or `<rev>-dirty` for a dirty tree) and the
# commit time (never the build time), as `cargo xtask build-images` does.
{ self, lib }:
let
  version = (lib.importTOML (self + "/Cargo.toml")).workspace.package.version;
  revision = self.rev or self.dirtyRev or "unknown";
  # lastModifiedDate is YYYYMMDDHHMMSS (UTC); the OCI label wants RFC 3339.
  d = self.lastModifiedDate or "19700101000000";
  part = start: len: builtins.substring start len d;
  created = "${part 0 4}-${part 4 2}-${part 6 2}T${part 8 2}:${part 10 2}:${part 12 2}Z";
in
{
  inherit version revision created;
  # What crates/buildinfo compiles into the binaries (`--version`, /api/v1/system/info).
  env = {
    WEKNORA_VERSION = version;
    WEKNORA_COMMIT = revision;
    WEKNORA_BUILD_TIME = created;
    SOURCE_DATE_EPOCH = toString (self.lastModified or 0);
  };
}
