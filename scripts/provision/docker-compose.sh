#!/usr/bin/env bash
# Installs docker-compose 1.29.2 (the Python implementation, from PyPI) into a virtualenv under
# $KEYWARD_TEST_CACHE/docker-compose/, only when it is missing or was installed differently, for
# test/deploy/compose.test.ts: `docker-compose -f docker-compose.yml config` validates and resolves
# a compose file without a Docker engine (none runs where Keyward is developed). Nothing is written
# into the repository, and nothing is put on PATH: the tests run
# $KEYWARD_TEST_CACHE/docker-compose/venv/bin/docker-compose.
#
# Pins besides docker-compose itself (a constraints file, also applied to build environments):
#  - cython<3: PyYAML 5.4.1 (docker-compose wants PyYAML<6) is built from source on Python >= 3.10
#    and fails with Cython 3 ("'build_ext' object has no attribute 'cython_sources'").
#  - docker<7 and requests<2.32: docker-compose 1.29.2 breaks against docker-py 7 (kwargs_from_env
#    lost ssl_version), and docker-py 6 against requests 2.32 (http+docker URLs). Only commands that
#    talk to an engine are affected, but the installed docker-compose should work as a whole.
set -euo pipefail

version="1.29.2"
cache="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}/docker-compose"
venv="$cache/venv"
bin="$venv/bin/docker-compose"
stamp="$cache/INSTALLED"
constraints=$'cython<3\ndocker<7\nrequests<2.32'
want="docker-compose==$version; constraints: $(echo "$constraints" | tr '\n' ' ')"

fail() {
  echo "provision: docker-compose: $*" >&2
  exit 1
}

installed_version() {
  # "docker-compose version 1.29.2, build unknown"
  "$bin" version --short 2>/dev/null || true
}

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ "$(installed_version)" = "$version" ]; then
  echo "provision: docker-compose present ($version, $bin)"
  exit 0
fi

python="$(command -v python3 || true)"
[ -n "$python" ] || fail "python3 is needed and is not on PATH; install it (e.g. apt-get install python3 python3-venv) and run this again"
if ! "$python" -m venv --help >/dev/null 2>&1; then
  echo "provision: docker-compose: python3 has no venv module; installing the Debian package python3-venv with apt-get"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    fail "cannot install python3-venv: not root and no sudo. Install it yourself (apt-get install python3-venv)"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3-venv >/dev/null
fi

echo "provision: installing docker-compose $version (Python, from PyPI) into $venv"
started=$(date +%s)
mkdir -p "$cache"
rm -rf "$venv" "$stamp"
work="$(mktemp -d "$cache/tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$constraints" >"$work/constraints.txt"

"$python" -m venv "$venv" >"$work/venv.log" 2>&1 || fail "python3 -m venv $venv failed: $(cat "$work/venv.log")"
# setuptools: docker-compose 1.29.2 still imports distutils, which Python 3.12 only has through it.
PIP_CONSTRAINT="$work/constraints.txt" "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
  "docker-compose==$version" setuptools >"$work/pip.log" 2>&1 ||
  fail "pip install docker-compose==$version failed (PyPI unreachable?):
$(tail -n 30 "$work/pip.log")"

[ "$(installed_version)" = "$version" ] || fail "installed, but '$bin version --short' does not say $version: $("$bin" version 2>&1 | head -n 3)"
echo "$want" >"$stamp"
echo "provision: installed docker-compose $version at $bin in $(($(date +%s) - started)) s"
