#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (the build's
# cmake and C compiler, and the real clients and servers the tests talk to), then runs the
# format and lint checks and every test. README.md and .ci/run call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake gcc pkg-config openssl python3-venv skopeo docker-registry apache2-utils curl nghttp2-client jq pebble prometheus podman haproxy lintian systemd systemd-container adduser containerd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# PyPI's clients and servers (oras-py, …), pinned, in a venv of the tests' own.
venv=target/test-venv
if ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/requirements.txt"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Not --all-targets: the benchmark (harness = false) would run as a test. clippy builds it.
cargo test
# The engine's API tests and the skopeo round trips again with the registry in S3 (a SeaweedFS
# the test process starts); the S3 driver's own tests are in the cargo test above.
REGAPP_TEST_STORAGE=s3 cargo test --test tests api::
REGAPP_TEST_TARGET=regapp-s3 cargo test --test tests skopeo::
# The Debian package: one release build, cargo deb, dpkg-deb, lintian, systemd-analyze, and the
# installed binary run with the installed config (packaging/README.md). Separate from cargo test
# because the release build takes minutes.
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
bash packaging/test-deb.sh
