#!/usr/bin/env bash
# Runs as root inside the container that packaging/test-unit-nspawn.sh boots (a real systemd,
# private network): installs /root/regapp.deb and checks the service it brings, with the
# configuration exactly as installed. Prints one line per check; the last line is
# "unit-checks: all passed" only if every check held.
set -uo pipefail

fail() {
  echo "unit-checks: FAIL: $*"
  echo "--- systemctl status regapp"
  systemctl status regapp --no-pager 2>&1 | tail -n 20
  echo "--- journalctl -u regapp"
  journalctl -u regapp --no-pager 2>&1 | tail -n 40
  exit 1
}
ok() { echo "unit-checks: ok: $*"; }
ca=/var/lib/regapp/tls/ca.crt
status_of() { # URL [curl args…]: the HTTP status
  local url=$1
  shift
  curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$@" "$url"
}

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/regapp.deb >/root/apt.log 2>&1 ||
  fail "apt-get install: $(tail -n 5 /root/apt.log)"
[ "$(systemctl is-enabled regapp)" = disabled ] && [ "$(systemctl is-active regapp)" = inactive ] ||
  fail "the install enabled or started the service: $(systemctl is-enabled regapp) $(systemctl is-active regapp)"
ok "installed; the service is neither enabled nor started"

echo pw-one | regapp user add ci --password-stdin --cost 4 >/dev/null || fail "regapp user add"
start=$(date +%s%N)
# Bounded: with Restart=on-failure a unit that cannot start keeps its start job waiting.
timeout 90 systemctl enable --now regapp 2>/dev/null || fail "systemctl enable --now regapp"
took=$((($(date +%s%N) - start) / 1000000))
[ "$(systemctl is-active regapp)" = active ] || fail "not active after start"
# Type=notify: start returned after READY=1, so the listener must answer at once.
[ "$(status_of https://localhost/v2/)" = 401 ] || fail "GET /v2/ right after start: $(status_of https://localhost/v2/)"
ok "enable --now returned after READY=1 (${took} ms); :443 answers 401 at once"

pid=$(systemctl show -p MainPID --value regapp)
proc=/proc/$pid/status
[ "$(stat -c %U "/proc/$pid")" = regapp ] || fail "runs as $(stat -c %U "/proc/$pid")"
# CapEff: only CAP_NET_BIND_SERVICE (bit 10); Seccomp 2 = filter; NoNewPrivs 1.
grep -q '^CapEff:[[:space:]]*0000000000000400$' "$proc" || fail "capabilities: $(grep ^Cap "$proc")"
grep -q '^Seccomp:[[:space:]]*2$' "$proc" || fail "no seccomp filter: $(grep ^Seccomp "$proc")"
grep -q '^NoNewPrivs:[[:space:]]*1$' "$proc" || fail "NoNewPrivs not set"
ok "process: user regapp, CapEff = cap_net_bind_service only, seccomp filter, no new privileges"

[ "$(status_of https://localhost/v2/ -u ci:pw-one)" = 200 ] || fail "the first user cannot log in"
printf 'regapp unit check\n' >/root/blob
digest=sha256:$(sha256sum /root/blob | cut -d' ' -f1)
[ "$(status_of "https://localhost/v2/unit/blobs/uploads/?digest=$digest" -u ci:pw-one -X POST \
  -H 'Content-Type: application/octet-stream' --data-binary @/root/blob)" = 201 ] ||
  fail "blob upload refused (storage not writable under ProtectSystem=strict?)"
[ "$(curl -s --cacert "$ca" -u ci:pw-one "https://localhost/v2/unit/blobs/$digest")" = "regapp unit check" ] ||
  fail "blob download"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9102/readyz)" = 200 ] || fail "/readyz"
# Read whole before grep: `grep -q` stops at the first match, and under pipefail the curl it
# leaves writing into a closed pipe would fail the check.
metrics=$(curl -s http://127.0.0.1:9102/metrics)
grep -q '^regapp_build_info' <<<"$metrics" || fail "/metrics"
ok "login, blob upload and download under /var/lib/regapp, /readyz 200, /metrics"

echo pw-two | regapp user add ci2 --password-stdin --cost 4 >/dev/null || fail "second user add"
deadline=$(($(date +%s) + 2))
until [ "$(status_of https://localhost/v2/ -u ci2:pw-two)" = 200 ]; do
  [ "$(date +%s)" -le "$deadline" ] || fail "the new user was not accepted within 2 s"
  sleep 0.1
done
ok "regapp user add is seen by the service without a reload"

timeout 60 systemctl reload regapp || fail "reload of a valid file"
echo 'not_a_key = 1' >>/etc/regapp/regapp.toml
if timeout 60 systemctl reload regapp 2>/dev/null; then fail "a broken file was reloaded"; fi
[ "$(systemctl is-active regapp)" = active ] || fail "a refused reload stopped the service"
[ "$(status_of https://localhost/v2/ -u ci:pw-one)" = 200 ] || fail "serving after a refused reload"
sed -i '$d' /etc/regapp/regapp.toml
ok "reload: a valid file applies; a broken one is refused by ExecReload's check-config, service untouched"

# WatchdogSec=30s: past it, a service that does not ping would have been restarted.
sleep 35
[ "$(systemctl show -p NRestarts --value regapp)" = 0 ] && [ "$(systemctl is-active regapp)" = active ] ||
  fail "restarted or stopped within 35 s: NRestarts=$(systemctl show -p NRestarts --value regapp)"
ok "watchdog fed: still the same process after 35 s (WatchdogSec=30s)"

start=$(date +%s%N)
timeout 90 systemctl stop regapp || fail "stop"
took=$((($(date +%s%N) - start) / 1000000))
[ "$(systemctl show -p Result --value regapp)" = success ] || fail "stop result $(systemctl show -p Result --value regapp)"
if grep -qiE 'operation not permitted|permission denied|seccomp' <<<"$(journalctl -u regapp --no-pager)"; then
  fail "the journal shows a refused operation: $(journalctl -u regapp --no-pager | grep -iE 'operation not permitted|permission denied|seccomp' | head -n 3)"
fi
ok "stop drained and exited cleanly in ${took} ms; no refused operation in the journal"
echo "unit-checks: all passed"
