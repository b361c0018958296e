#!/usr/bin/env bash
# Installs nsmithuk/local-kms (an AWS KMS emulator that really refuses disabled keys)
# into $KEYWARD_TEST_CACHE/local-kms/, only when it is missing. It is built from the Go
# module of one pinned commit, fetched by exact version through the Go module proxy
# (the proxy refuses version lists, so `go install …@latest` cannot be used). Nothing is
# written into the repository.
set -euo pipefail

module="github.com/nsmithuk/local-kms"
version="v0.0.0-20231025161602-e4d9425700fe"
# The module's hashes (its go.sum lines): the download is checked against them, since the
# checksum database is not consulted here (GOSUMDB=off).
sum_zip="h1:vi4/Zs9LgC/8UsAGEtiZhfznoNC03O0hbLyz9l4Nod0="
sum_mod="h1:BXBjS9co9bgdF+YNcCGAaNhVh15v8PtbSc9FjRp5VOo="
cache="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}/local-kms"
binary="$cache/local-kms"
stamp="$cache/VERSION"

fail() {
  echo "provision: local-kms: $*" >&2
  exit 1
}

if [ -x "$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module@$version" ]; then
  echo "provision: local-kms present ($module@$version, $binary)"
  exit 0
fi

command -v go >/dev/null 2>&1 || fail "Go is needed to build $module@$version and is not on PATH; install Go >= 1.20 (e.g. apt-get install golang-go) and run this again"

echo "provision: installing local-kms $module@$version from the Go module proxy ($(go env GOPROXY)) into $cache"
started=$(date +%s)
mkdir -p "$cache"
build="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$build"' EXIT

# A throwaway module that requires the emulator at the pinned version; `go build` of the
# emulator's main package then resolves its dependencies by the exact versions in its go.mod.
export GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local
cat >"$build/go.mod" <<EOF
module keyward.test/local-kms-build

go 1.20

require $module $version
EOF
printf '%s %s %s\n%s %s/go.mod %s\n' "$module" "$version" "$sum_zip" "$module" "$version" "$sum_mod" >"$build/go.sum"
(cd "$build" && go mod download -json "$module@$version" >"$build/download.json" 2>"$build/download.log") ||
  fail "go mod download $module@$version failed (Go module proxy unreachable, or the download does not match the pinned hash):
$(cat "$build/download.log")"
(cd "$build" && go build -trimpath -o "$build/local-kms" "$module" 2>"$build/build.log") ||
  fail "go build $module failed:
$(cat "$build/build.log")"
mv -f "$build/local-kms" "$binary"
echo "$module@$version" >"$stamp"
echo "provision: installed local-kms at $binary in $(($(date +%s) - started)) s"
