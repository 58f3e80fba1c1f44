#!/usr/bin/env bash
# Builds the Debian package from this checkout: a release build of regapp, then `cargo deb`
# with the metadata in Cargo.toml ([package.metadata.deb]). Prints the .deb's path on the last
# line of stdout. Extra arguments go to `cargo deb` (e.g. --no-build after a release build).
# The binary is stripped (lintian: unstripped-binary-or-object). A release build takes several
# minutes on 2 cores; it honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "installing cargo-deb (crates.io)" >&2
  cargo install --locked cargo-deb >&2
fi
# cargo deb prints the package's path on stdout; the build's progress goes to stderr.
cargo deb --locked --strip "$@" | tail -n 1
