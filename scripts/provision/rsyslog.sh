#!/usr/bin/env bash
# Makes sure rsyslogd and its GnuTLS network stream driver (lmnsd_gtls) are installed, for the
# syslog receiver of the audit-delivery tests (test/helpers/rsyslog.ts). Installs the Debian
# packages rsyslog and rsyslog-gnutls with apt-get when missing, and says so. The tests run their
# own rsyslogd per test (own config, own port, own temp dir); the system logging daemon is never
# wanted: installing must not start one, and if the package scripts started one anyway it is
# stopped again.
set -euo pipefail

# Where the rsyslog loadable modules may live (multiarch Debian/Ubuntu, then others).
gtls_module() {
  local dir
  for dir in /usr/lib/*-linux-gnu*/rsyslog /usr/lib/rsyslog /usr/lib64/rsyslog /usr/local/lib/rsyslog; do
    if [ -f "$dir/lmnsd_gtls.so" ]; then
      echo "$dir/lmnsd_gtls.so"
      return 0
    fi
  done
  return 1
}

rsyslog_version() {
  # First line: "rsyslogd  8.2302.0 (aka 2023.02) compiled with:"
  rsyslogd -v 2>/dev/null | awk 'NR == 1 { print $2; exit }'
}

if command -v rsyslogd >/dev/null 2>&1 && gtls_module >/dev/null; then
  echo "provision: rsyslog present (rsyslogd $(rsyslog_version), gtls driver)"
  exit 0
fi

echo "provision: rsyslog or its GnuTLS driver is missing; installing the Debian packages rsyslog and rsyslog-gnutls with apt-get (the system rsyslog service is not started)"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "provision: cannot install rsyslog: not root and no sudo. Install it yourself (apt-get install rsyslog rsyslog-gnutls)" >&2
  exit 1
fi

# A system daemon is told apart from the tests' own by its command line: the tests always pass
# their own config with -f.
system_rsyslogd_pids() {
  local pid args
  for pid in $(pgrep -x rsyslogd 2>/dev/null || true); do
    args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case " $args " in
      *" -f "*) ;;
      *) echo "$pid" ;;
    esac
  done
}
before="$(system_rsyslogd_pids | tr '\n' ' ')"

# Without systemd, the package's postinst starts the service through invoke-rc.d, which asks
# /usr/sbin/policy-rc.d first: exit 101 means "action forbidden". Put one in place for the
# duration of the install, only when there is none (an existing one is the admin's and stays).
policy=/usr/sbin/policy-rc.d
created_policy=""
cleanup() {
  if [ -n "$created_policy" ]; then $sudo rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Temporary, from keyward scripts/provision/rsyslog.sh: no service starts during apt-get install.\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
# Another install may hold the dpkg lock for a while: wait for it rather than fail.
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends rsyslog rsyslog-gnutls >/dev/null

cleanup
created_policy=""

# Stop any system rsyslogd that was not running before the install.
for pid in $(system_rsyslogd_pids); do
  case " $before " in *" $pid "*) continue ;; esac
  echo "provision: the rsyslog package started a system rsyslogd (pid $pid); stopping it"
  $sudo kill -TERM "$pid" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then $sudo kill -KILL "$pid" 2>/dev/null || true; fi
done

if ! command -v rsyslogd >/dev/null 2>&1; then
  echo "provision: rsyslog installed, but rsyslogd is not on PATH" >&2
  exit 1
fi
if ! gtls_module >/dev/null; then
  echo "provision: rsyslog-gnutls installed, but lmnsd_gtls.so was not found in the rsyslog module directory" >&2
  exit 1
fi
echo "provision: installed rsyslog (rsyslogd $(rsyslog_version), gtls driver $(gtls_module))"
