#!/usr/bin/env bash
# Empty stand-ins for the workspace members' sources, run in docker/Dockerfile's dependency
# layer: with only the manifests, the lock file and these, `cargo build` compiles every
# dependency, and the layer is rebuilt only when a manifest or the lock file changes.
#
#   docker/stand-ins.sh DIR        # DIR holds Cargo.toml, Cargo.lock, bench/Cargo.toml
#
# cargo refuses a manifest whose targets are missing, so besides src/main.rs and src/lib.rs a
# stand-in is made for every target path a manifest names (bench's [[bin]] path = "src/...")
# and for every [[bench]] (benches/NAME.rs). ci/compose-check.sh runs this on a copy of the
# manifests and asks cargo to read them, so a new target kind fails CI, not the image build.
set -euo pipefail
cd "$1"
for crate in . bench; do
  mkdir -p "$crate/src"
  echo 'fn main() {}' >"$crate/src/main.rs"
  : >"$crate/src/lib.rs"
  sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$crate/Cargo.toml" |
    while read -r target; do
      mkdir -p "$crate/$(dirname "$target")"
      echo 'fn main() {}' >"$crate/$target"
    done
  awk '/^\[\[bench\]\]/ { b = 1; next } /^\[/ { b = 0 } b && /^name *=/ { gsub(/^name *= *"|".*$/, ""); print }' "$crate/Cargo.toml" |
    while read -r name; do
      mkdir -p "$crate/benches"
      echo 'fn main() {}' >"$crate/benches/$name.rs"
    done
done
