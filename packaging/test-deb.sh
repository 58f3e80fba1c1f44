#!/usr/bin/env bash
# The Debian package end to end, as tests/run-all.sh runs it after `cargo test`:
#   1. build it (packaging/build-deb.sh: a release build, then cargo deb);
#   2. its files, modes, conffiles, maintainer scripts and dependencies (dpkg-deb -c / -e / -f);
#   3. lintian: no errors (the warnings left are explained in packaging/README.md);
#   4. the unit: `systemd-analyze verify` silent, `systemd-analyze security` exposure ≤ 2.0;
#   5. installed — with dpkg on this machine when CI=true and root; as root otherwise, the same
#      inside a private mount namespace whose /etc, /usr and /var are overlays (the machine is
#      not touched, the machine's own /etc/regapp and /var/lib/regapp are hidden); else
#      unpacked into a throw-away root. The installed binary runs the installed config, only
#      its listen addresses moved to free loopback ports (and, unpacked, its paths into the
#      throw-away root): HTTPS answers 401, `regapp user add` is seen within 2 s, a blob
#      upload lands in storage (as the `regapp` user when installed). Installed, it also checks
#      upgrade (an edited conffile kept), remove (data kept) and purge (only what the package
#      made).
#   6. as root: the unit under a real systemd in a container (packaging/test-unit-nspawn.sh).
# Extra arguments go to cargo deb (e.g. --no-build to package an existing release build).
# REGAPP_DEB_SANDBOXED=PATH skips steps 1-3 and tests that package (the sandbox uses it).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "test-deb: FAIL: $*" >&2
  exit 1
}
ok() { echo "test-deb: ok: $*"; }

work=$(mktemp -d)
chmod 755 "$work" # the `regapp` user reads the test config in here
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${REGAPP_DEB_SANDBOXED:-}" ]; then
  # ---- 1. build ----------------------------------------------------------------------------
  deb=$(packaging/build-deb.sh "$@")
  [ -f "$deb" ] || fail "packaging/build-deb.sh printed no package path (got: $deb)"
  deb=$(realpath "$deb")
  ok "built $deb ($(du -h "$deb" | cut -f1))"

  # ---- 2. contents and control ----------------------------------------------------------------
  contents=$(dpkg-deb -c "$deb")
  expect_entry() { # MODE PATH
    grep -Eq "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$contents" ||
      fail "$2 missing or not $1 root/root in the package:
  $contents"
  }
  expect_entry -rwxr-xr-x usr/bin/regapp
  expect_entry -rw-r--r-- usr/lib/systemd/system/regapp.service
  expect_entry -rw-r--r-- etc/regapp/regapp.toml
  expect_entry -rw-r--r-- usr/share/regapp/htpasswd.example
  expect_entry -rw-r--r-- usr/share/doc/regapp/copyright
  ok "contents: binary, unit, config, htpasswd example, copyright"

  dpkg-deb -e "$deb" "$work/control"
  [ "$(cat "$work/control/conffiles")" = "/etc/regapp/regapp.toml" ] ||
    fail "conffiles should be exactly /etc/regapp/regapp.toml: $(cat "$work/control/conffiles")"
  for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "maintainer script $script missing or not executable"
  done
  grep -Eq '(^|, )adduser($|,)' <<<"$(dpkg-deb -f "$deb" Depends)" ||
    fail "Depends lacks adduser: $(dpkg-deb -f "$deb" Depends)"
  ok "control: conffiles = /etc/regapp/regapp.toml; postinst, prerm, postrm; Depends: $(dpkg-deb -f "$deb" Depends)"

  # ---- 3. lintian -----------------------------------------------------------------------------
  if ! lintian_out=$(lintian --fail-on error --allow-root "$deb" 2>&1); then
    fail "lintian found errors:
  $lintian_out"
  fi
  ok "lintian: no errors; $(grep -c '^W: ' <<<"$lintian_out" || true) warnings (packaging/README.md)"
  [ -z "$lintian_out" ] || sed 's/^/    /' <<<"$lintian_out"

else
  deb=$REGAPP_DEB_SANDBOXED
fi

# ---- 6. the unit under a real systemd (root only; see packaging/test-unit-nspawn.sh) ----------
unit_under_systemd() {
  local status=0
  bash packaging/test-unit-nspawn.sh "$deb" || status=$?
  case $status in
    0) ok "the unit under systemd: started (READY=1), hardened, reloads, watchdog, stops" ;;
    2) echo "test-deb: the unit under systemd was skipped (see above): this machine cannot boot a container" ;;
    *) fail "the unit under systemd (packaging/test-unit-nspawn.sh)" ;;
  esac
}

# As root outside CI: run steps 4 and 5 in a sandbox, installed with dpkg for real.
if [ -z "${REGAPP_DEB_SANDBOXED:-}" ] && [ "${CI:-}" != true ] && [ "$(id -u)" -eq 0 ] &&
  unshare -m true 2>/dev/null; then
  for dir in etc usr var; do mkdir -p "$work/overlay/$dir/upper" "$work/overlay/$dir/work"; done
  ok "root outside CI: installing inside a mount namespace with /etc, /usr and /var overlaid"
  unshare -m --propagation private bash -c '
    set -e
    for dir in etc usr var; do
      mount -t overlay overlay \
        -o "lowerdir=/$dir,upperdir=$1/overlay/$dir/upper,workdir=$1/overlay/$dir/work" "/$dir"
    done
    rm -rf /etc/regapp /var/lib/regapp # whiteouts in the overlay: the machine keeps its own
    exec env CI=true REGAPP_DEB_SANDBOXED="$2" bash "$3"' sandbox "$work" "$deb" "$0"
  unit_under_systemd
  echo "test-deb: all checks passed"
  exit
fi

# ---- 4. the unit ----------------------------------------------------------------------------
ci_install=false
if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ]; then
  ci_install=true
fi
if $ci_install; then
  # Never on a machine that has regapp for real: the test removes what it installs.
  if dpkg-query -W -f='${Status}' regapp 2>/dev/null | grep -q "ok installed" ||
    [ -e /var/lib/regapp ] || [ -e /etc/regapp ]; then
    fail "CI=true: regapp (or /var/lib/regapp, /etc/regapp) is already on this machine; not touching it"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$work/apt.log" 2>&1 ||
    fail "apt-get install failed: $(cat "$work/apt.log")"
  root=
  ok "installed with apt-get ($([ -n "${REGAPP_DEB_SANDBOXED:-}" ] && echo "in the sandbox" || echo "on this machine: CI=true, root"))"
else
  dpkg-deb -x "$deb" "$work/root"
  root=$work/root
  ok "unpacked into $root (CI=true as root installs on the machine instead)"
fi

unit=$root/usr/lib/systemd/system/regapp.service
verify_root=$work/verify-root
if $ci_install; then
  verify_out=$(systemd-analyze verify regapp.service 2>&1) || fail "systemd-analyze verify: $verify_out"
else
  # verify resolves the unit's dependencies and executables inside --root: give it the
  # package's files and the host's targets.
  cp -a "$root" "$verify_root"
  cp -n /lib/systemd/system/*.target "$verify_root/usr/lib/systemd/system/" 2>/dev/null || true
  verify_out=$(systemd-analyze verify --root="$verify_root" regapp.service 2>&1) ||
    fail "systemd-analyze verify: $verify_out"
fi
[ -z "$verify_out" ] || fail "systemd-analyze verify printed warnings: $verify_out"
security=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1) ||
  fail "exposure above 2.0 (threshold 20 of 100): $(tail -n 1 <<<"$security")"
ok "systemd-analyze verify: clean; security: $(tail -n 1 <<<"$security" | sed 's/^→ //')"

# ---- 5. the installed binary with the installed config ---------------------------------------
bin=$root/usr/bin/regapp
"$bin" --version >/dev/null || fail "the installed binary does not run"

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}
https_port=$(free_port)
other_ports=$(for _ in 1 2 3 4 5 6; do free_port; done | tr '\n' ' ')
# Every `…listen = "host:port"` of the installed file moves to its own free loopback port
# (https_listen, http_listen, engine.listen, and any listener a later version adds).
config=$work/regapp.toml
awk -v https="$https_port" -v others="$other_ports" '
  BEGIN { split(others, port, " "); n = 0 }
  /^[a-z_]*listen *= *"/ {
    print $1 " = \"127.0.0.1:" ($1 == "https_listen" ? https : port[++n]) "\""
    next
  }
  { print }' "$root/etc/regapp/regapp.toml" >"$config"
if ! $ci_install; then
  # The throw-away root stands in for / : /var/lib/regapp and /etc/regapp move inside it.
  sed -i -e "s|\"/var/lib/regapp|\"$root/var/lib/regapp|g" -e "s|\"/etc/regapp|\"$root/etc/regapp|g" "$config"
  mkdir -p "$root/var/lib/regapp/registry"
  cp "$root/usr/share/regapp/htpasswd.example" "$root/etc/regapp/htpasswd"
fi
chmod 644 "$config"
"$bin" check-config --config "$config" >/dev/null || fail "the installed config does not check: $("$bin" check-config --config "$config" 2>&1)"
diff <(grep -v 'listen *=' "$root/etc/regapp/regapp.toml" | sed -e "s|\"$root/|\"/|g") \
  <(grep -v 'listen *=' "$config" | sed -e "s|\"$root/|\"/|g") >/dev/null ||
  fail "the test config differs from the installed one in more than listen addresses and root"

run_as=()
if $ci_install; then
  getent passwd regapp >/dev/null || fail "postinst did not create the regapp user"
  [ "$(stat -c '%U:%G %a' /var/lib/regapp)" = "regapp:regapp 750" ] ||
    fail "/var/lib/regapp is $(stat -c '%U:%G %a' /var/lib/regapp), expected regapp:regapp 750"
  [ "$(stat -c '%U:%G %a' /var/lib/regapp/registry)" = "regapp:regapp 750" ] ||
    fail "/var/lib/regapp/registry is $(stat -c '%U:%G %a' /var/lib/regapp/registry)"
  [ "$(stat -c '%U:%G %a' /etc/regapp/htpasswd)" = "root:regapp 640" ] ||
    fail "/etc/regapp/htpasswd is $(stat -c '%U:%G %a' /etc/regapp/htpasswd), expected root:regapp 640"
  ok "postinst: user regapp; /var/lib/regapp{,/registry} regapp:regapp 0750; /etc/regapp/htpasswd root:regapp 0640"
  run_as=(runuser -u regapp --)
fi

"${run_as[@]}" "$bin" serve --config "$config" >"$work/server.log" 2>&1 &
server_pid=$!
url=https://127.0.0.1:$https_port
ca=$root/var/lib/regapp/tls/ca.crt
for _ in $(seq 1 300); do
  [ -s "$ca" ] && curl -s -o /dev/null --cacert "$ca" "$url/v2/" && break
  kill -0 "$server_pid" 2>/dev/null || fail "the installed server exited: $(cat "$work/server.log")"
  sleep 0.1
done
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$url/v2/") || true
[ "$status" = 401 ] || fail "GET /v2/ without credentials answered $status, expected 401: $(cat "$work/server.log")"
ok "installed server answers on $url (self-signed, ca.crt in state_dir): 401 without credentials"

echo "pkg-test-password" | "$bin" user --config "$config" add ci --password-stdin --cost 4 >/dev/null
if $ci_install; then
  [ "$(stat -c '%U:%G %a' /etc/regapp/htpasswd)" = "root:regapp 640" ] ||
    fail "regapp user add changed /etc/regapp/htpasswd to $(stat -c '%U:%G %a' /etc/regapp/htpasswd)"
fi
start=$(date +%s%N)
until [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -u ci:pkg-test-password "$url/v2/")" = 200 ]; do
  (($(date +%s%N) - start < 2000000000)) || fail "the new user was not accepted within 2 s: $(cat "$work/server.log")"
  sleep 0.1
done
ok "regapp user add: accepted by the running server after $((($(date +%s%N) - start) / 1000000)) ms"

printf 'regapp package test\n' >"$work/blob"
digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -u ci:pkg-test-password \
  -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$work/blob" \
  "$url/v2/pkgtest/blobs/uploads/?digest=$digest")
[ "$status" = 201 ] || fail "monolithic blob upload answered $status: $(cat "$work/server.log")"
stored=$root/var/lib/regapp/registry/docker/registry/v2/blobs/sha256/${digest:7:2}/${digest:7}/data
cmp -s "$stored" "$work/blob" || fail "the blob is not in storage at $stored"
ok "blob upload stored under $root/var/lib/regapp/registry ($(stat -c '%U' "$stored"))"

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=

if $ci_install; then
  # Upgrade (same version again): an edited conffile, the users and the data stay.
  sed -i 's/^hostname = .*/hostname = "pkgtest.example.net"/' /etc/regapp/regapp.toml
  users_before=$(sha256sum </etc/regapp/htpasswd)
  DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >"$work/dpkg.log" 2>&1 ||
    fail "reinstall failed: $(cat "$work/dpkg.log")"
  grep -q '^hostname = "pkgtest.example.net"' /etc/regapp/regapp.toml || fail "upgrade lost the edited conffile"
  [ "$(sha256sum </etc/regapp/htpasswd)" = "$users_before" ] || fail "upgrade changed the htpasswd file"
  ok "upgrade: edited conffile and users kept"

  dpkg -r regapp >"$work/dpkg.log" 2>&1 || fail "dpkg -r failed: $(cat "$work/dpkg.log")"
  [ ! -e /usr/bin/regapp ] || fail "remove left /usr/bin/regapp"
  cmp -s "$stored" "$work/blob" || fail "remove deleted registry data"
  [ -f /etc/regapp/htpasswd ] && [ -f /etc/regapp/regapp.toml ] || fail "remove deleted configuration"
  ok "remove: binary gone; data, users and configuration kept"

  dpkg --purge regapp >"$work/dpkg.log" 2>&1 || fail "dpkg --purge failed: $(cat "$work/dpkg.log")"
  [ ! -e /etc/regapp/regapp.toml ] || fail "purge kept the conffile"
  cmp -s "$stored" "$work/blob" || fail "purge deleted registry data"
  grep -q '^ci:' /etc/regapp/htpasswd || fail "purge deleted an htpasswd file holding users"
  ok "purge: conffile gone; registry data and the htpasswd holding users kept"
  rm -rf /var/lib/regapp /etc/regapp # what this test made

  # A purge right after install leaves nothing behind but the system user.
  DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || fail "install failed: $(cat "$work/dpkg.log")"
  dpkg --purge regapp >"$work/dpkg.log" 2>&1 || fail "purge failed: $(cat "$work/dpkg.log")"
  [ ! -e /var/lib/regapp ] && [ ! -e /etc/regapp ] ||
    fail "purge of an unused install left $(ls -d /var/lib/regapp /etc/regapp 2>/dev/null)"
  ok "install then purge: /var/lib/regapp and /etc/regapp gone (the regapp user stays, as Debian does)"
fi
if [ -n "${REGAPP_DEB_SANDBOXED:-}" ]; then
  echo "test-deb: installed-package checks passed (sandbox)"
  exit
fi
[ "$(id -u)" -ne 0 ] || unit_under_systemd
echo "test-deb: all checks passed"
