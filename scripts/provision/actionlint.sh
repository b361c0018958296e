#!/usr/bin/env bash
# Installs actionlint (the GitHub Actions workflow checker test/deploy/workflows.test.ts runs
# over .github/workflows) into $KEYWARD_TEST_CACHE/bin/, only when it is missing or not the
# pinned version, and says what it does. It is built from source with
#   go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
# (GOBIN a temporary directory, the binary then moved into $KEYWARD_TEST_CACHE/bin) through
# the Go module proxy (GOPROXY, GOMODCACHE and GOCACHE are taken from the environment,
# Go's defaults otherwise). actionlint also runs shellcheck over `run:` scripts when shellcheck
# is on PATH; it is not needed, and not installed here. Nothing is written into the repository.
set -euo pipefail

module="github.com/rhysd/actionlint"
version="v1.7.12"
# The hash of the actionlint module zip (its go.sum line). The checksum database is not
# consulted (GOSUMDB=off: it is not reachable from every build machine), so the download is
# checked against this instead; its dependencies are the exact versions of its go.mod.
sum="h1:vQ4GeJN86C0QH+gTUQcs8McmK62OLT3kmakPMtEWYnY="
cache="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}"
bin="$cache/bin"
binary="$bin/actionlint"

fail() {
  echo "provision: actionlint: $*" >&2
  exit 1
}

# `actionlint -version` prints the module version it was built from on its first line.
version_of() {
  "$1" -version 2>/dev/null | head -n 1 || true
}

if [ -x "$binary" ] && [ "$(version_of "$binary")" = "$version" ]; then
  echo "provision: actionlint $version present ($binary)"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  fail "Go is needed to build $module@$version and is not on PATH; install Go >= 1.25 (e.g. from https://go.dev/dl) and run this again"

echo "provision: installing actionlint $version into $bin with go install $module/cmd/actionlint@$version (Go module proxy $(go env GOPROXY))"
started=$(date +%s)
mkdir -p "$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOTOOLCHAIN=local

# Fetch the actionlint module alone first and check its hash; go install then reuses it.
# shellcheck source=lib/go-module.sh
. "$(cd "$(dirname "$0")" && pwd)/lib/go-module.sh"
download_checked_module "$work" "$module" "$version" "$sum"

# Built into the temporary directory, then moved into place: an interrupted build never
# leaves a half-written binary behind.
(cd "$work" && GOBIN="$work/bin" GOSUMDB=off GOFLAGS= CGO_ENABLED=0 \
  go install -trimpath "$module/cmd/actionlint@$version" >"$work/install.log" 2>&1) ||
  fail "go install $module/cmd/actionlint@$version failed:
$(tail -n 40 "$work/install.log")"
[ "$(version_of "$work/bin/actionlint")" = "$version" ] ||
  fail "the actionlint built reports version '$(version_of "$work/bin/actionlint")', expected $version"
mv -f "$work/bin/actionlint" "$binary"
echo "provision: installed actionlint $version at $binary in $(($(date +%s) - started)) s"
