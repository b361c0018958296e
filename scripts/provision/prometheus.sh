#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus' checker: metric exposition lint, rule checks, rule
# unit tests) is on PATH for test/observability. When it is missing, installs Debian's
# `prometheus` package, which ships it, with apt-get — without starting the Prometheus
# server: these are containers without systemd, and the package's maintainer scripts
# would otherwise start the daemon through invoke-rc.d. A temporary policy-rc.d that
# refuses every start (exit 101) is put in place for the install, only when none exists,
# and removed afterwards; then any prometheus daemon that started anyway is stopped.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "provision: promtool present (version $(promtool --version 2>&1 | sed -n '1s/^promtool, version \([^ ]*\).*/\1/p'), $(command -v promtool))"
  exit 0
fi

fail() {
  echo "provision: prometheus: $*" >&2
  exit 1
}

echo "provision: promtool is missing; installing the Debian package prometheus (it ships promtool) with apt-get, without starting the server"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  fail "cannot install prometheus: not root and no sudo. Install it yourself (apt-get install --no-install-recommends prometheus)"
fi
command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available; install promtool some other way (it comes with Prometheus) and put it on PATH"

policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
  echo "provision: $policy already exists; leaving it as it is"
else
  echo "provision: installing a temporary $policy that forbids service starts during the install"
  # Removed on any exit, also when the install fails.
  trap '$sudo rm -f "$policy"; echo "provision: removed the temporary $policy"' EXIT
  printf '#!/bin/sh\n# Temporary (scripts/provision/prometheus.sh): no service starts during package installs.\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
fi

started=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Another provisioning script may be installing packages at the same moment: wait for the
# dpkg lock rather than failing at once.
lock_wait=(-o DPkg::Lock::Timeout=300)
$sudo apt-get "${lock_wait[@]}" update -qq
$sudo apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends prometheus >/dev/null

# policy-rc.d should have kept it from starting; make sure, and stop a server that started
# anyway (e.g. when a policy-rc.d of someone else's was removed mid-install). Only processes
# whose executable is the packaged server binary are touched: none can have been running
# before, since the package was not installed.
packaged_server_pids() {
  local pid
  for pid in $(pgrep -x prometheus 2>/dev/null || true); do
    case "$($sudo readlink "/proc/$pid/exe" 2>/dev/null || true)" in
      /usr/bin/prometheus | "/usr/bin/prometheus (deleted)") echo "$pid" ;;
    esac
  done
}
for pid in $(packaged_server_pids); do
  echo "provision: the package install started a prometheus server (pid $pid); stopping it"
  $sudo kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 25); do
    $sudo kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if $sudo kill -0 "$pid" 2>/dev/null; then $sudo kill -KILL "$pid" 2>/dev/null || true; fi
done
[ -z "$(packaged_server_pids)" ] || fail "a prometheus server is still running: $(packaged_server_pids | tr '\n' ' ')"
echo "provision: no prometheus server is running"

command -v promtool >/dev/null 2>&1 || fail "the prometheus package is installed, but promtool is not on PATH"
echo "provision: installed promtool $(promtool --version 2>&1 | sed -n '1s/^promtool, version \([^ ]*\).*/\1/p') in $(($(date +%s) - started)) s"
