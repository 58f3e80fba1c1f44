#!/usr/bin/env bash
# The package's unit under a real systemd: boots this machine's own system, read-only below an
# overlay (nothing on the machine changes), in a container with systemd-nspawn and a private
# network, installs the .deb there and runs packaging/unit-checks.sh as the boot's only job:
# `systemctl enable --now` returns once regapp sent READY=1, the hardened process (user regapp,
# only CAP_NET_BIND_SERVICE, seccomp, no new privileges) serves :443 with the installed config,
# `regapp user add` is seen, reload applies a good file and refuses a broken one, the watchdog
# is fed, stop drains. Usage: test-unit-nspawn.sh PACKAGE.deb (as root).
#
# Exit status: 0 passed, 1 failed, 2 skipped (not root, no systemd-nspawn or overlayfs, or the
# container did not boot: a property of the machine, said on stderr, not of the package).
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(realpath "$1")
skip() {
  echo "test-unit-nspawn: skipped: $*" >&2
  exit 2
}
[ "$(id -u)" -eq 0 ] || skip "needs root"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (Debian package systemd-container)"
[ -x /lib/systemd/systemd ] || skip "no systemd to boot"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/upper" "$work/overlay-work" "$work/root"

# Everything the container changes lands in $work/upper. The mounts live in a private mount
# namespace, so they vanish with it even if this script is killed.
unshare -m --propagation private bash -s "$work" "$deb" "$PWD/packaging/unit-checks.sh" <<'SANDBOX' || exit $?
set -euo pipefail
work=$1 deb=$2 checks=$3
root=$work/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$root" ||
  { echo "test-unit-nspawn: skipped: no overlayfs" >&2; exit 2; }
# The machine's own regapp, if any, and anything a previous run left are not the test's.
rm -rf "$root/etc/regapp" "$root/var/lib/regapp" "$root/root/unit-checks."*
cp "$deb" "$root/root/regapp.deb"
cp "$checks" "$root/root/unit-checks.sh"
systemd-id128 new >"$root/etc/machine-id" # journald refuses the host's id in a container
cat >"$root/etc/systemd/system/regapp-unit-checks.service" <<'UNIT'
[Unit]
Description=regapp package: unit checks
After=basic.target
[Service]
Type=oneshot
# Power off when done, whatever the checks found (their log says). SuccessAction= did not end
# the container under nspawn 252; a queued poweroff does.
ExecStart=/bin/sh -c '/root/unit-checks.sh >>/root/unit-checks.log 2>&1; systemctl --no-block poweroff'
TimeoutStartSec=5min
UNIT
cat >"$root/etc/systemd/system/regapp-unit-checks.target" <<'UNIT'
[Unit]
Description=regapp package: boot only what the unit checks need
Requires=basic.target regapp-unit-checks.service
After=basic.target
AllowIsolate=yes
UNIT
# The boot starts basic.target and the checks: none of the machine's own services.
timeout 400 systemd-nspawn -q -D "$root" -M "regapp-pkgtest-$$" -b --private-network \
  --console=pipe --register=no --keep-unit --link-journal=no \
  -- systemd.unit=regapp-unit-checks.target >"$work/boot.log" 2>&1 || true
if [ ! -s "$work/upper/root/unit-checks.log" ]; then
  echo "test-unit-nspawn: skipped: the container did not run the checks:" >&2
  tail -n 20 "$work/boot.log" >&2
  exit 2
fi
sed 's/^/    /' "$work/upper/root/unit-checks.log"
grep -q '^unit-checks: all passed$' "$work/upper/root/unit-checks.log"
SANDBOX
echo "test-unit-nspawn: the unit passed under systemd $(systemctl --version | head -n 1 | cut -d' ' -f2)"
