#!/usr/bin/env bash
# Puts the two tools test/deploy/helm.test.ts needs into $KEYWARD_TEST_CACHE/bin, each only
# when missing or stale, and says what it does:
#
#  - helm v3.22.0: linked from PATH when that helm is exactly v3.22.0; otherwise built with
#    `go install helm.sh/helm/v3/cmd/helm@v3.22.0` from the Go module proxy (a few minutes
#    the first time: helm and its dependencies are downloaded and compiled).
#  - k8s-validate: the repository's own strict Kubernetes manifest checker
#    (tools/k8s-validate), built with `go build`. It is rebuilt only when its sources
#    (go.mod, go.sum, *.go) or the Go version change: both are kept in a stamp file beside it.
#
# GOMODCACHE, GOCACHE and GOPROXY are taken from the environment (Go's defaults otherwise).
# Nothing is written into the repository.
set -euo pipefail
cache="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}"
mkdir -p "$cache/bin"
bin="$(cd "$cache/bin" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

helm_module="helm.sh/helm/v3"
helm_version="v3.22.0"
# The hash of the helm module zip (its go.sum line). The checksum database is not consulted
# (GOSUMDB=off: it is not reachable from every build machine), so the download is checked
# against this instead. helm's own go.sum then pins every dependency.
helm_sum="h1:n1if5iQgHYsujPAcO5oonH/KiSNUmqmUF0iGVjSF3AU="
# The Kubernetes minor version helm's client libraries implement (k8s.io/* v0.37.x), set at
# link time as helm's own Makefile does: it is the default .Capabilities.KubeVersion of
# `helm template` and what `helm lint` checks deprecated APIs against.
helm_k8s_major=1
helm_k8s_minor=37

validator_src="tools/k8s-validate"

fail() {
  echo "provision: helm: $*" >&2
  exit 1
}

helm_version_of() {
  "$1" version --template '{{.Version}}' 2>/dev/null || true
}

export GOTOOLCHAIN=local

# --- helm -------------------------------------------------------------------------------
if [ -x "$bin/helm" ] && [ "$(helm_version_of "$bin/helm")" = "$helm_version" ]; then
  echo "provision: helm $helm_version present ($bin/helm)"
elif command -v helm >/dev/null 2>&1 && [ "$(helm_version_of "$(command -v helm)")" = "$helm_version" ]; then
  ln -sfn "$(command -v helm)" "$bin/helm"
  echo "provision: helm $helm_version found on PATH ($(command -v helm)); linked it as $bin/helm"
else
  command -v go >/dev/null 2>&1 ||
    fail "helm $helm_version is missing and Go, needed to build it, is not on PATH; install Go >= 1.26 or put helm $helm_version on PATH, and run this again"
  echo "provision: installing helm $helm_version into $bin with go install $helm_module/cmd/helm@$helm_version (Go module proxy $(go env GOPROXY); a few minutes the first time)"
  started=$(date +%s)
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # Fetch the helm module alone first and check its hash; go install then reuses it.
  # shellcheck source=lib/go-module.sh
  . "$here/lib/go-module.sh"
  download_checked_module "$work" "$helm_module" "$helm_version" "$helm_sum"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$helm_k8s_major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$helm_k8s_major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
  (cd "$work" && GOBIN="$bin" GOSUMDB=off GOFLAGS= CGO_ENABLED=0 \
    go install -trimpath -ldflags "$ldflags" "$helm_module/cmd/helm@$helm_version" >"$work/install.log" 2>&1) ||
    fail "go install $helm_module/cmd/helm@$helm_version failed:
$(tail -n 40 "$work/install.log")"
  [ "$(helm_version_of "$bin/helm")" = "$helm_version" ] ||
    fail "the helm built into $bin/helm reports version '$(helm_version_of "$bin/helm")', expected $helm_version"
  echo "provision: installed helm $helm_version at $bin/helm in $(($(date +%s) - started)) s"
fi

# --- k8s-validate -----------------------------------------------------------------------
[ -f "$validator_src/go.mod" ] || fail "$validator_src/go.mod is missing: run this from a complete Keyward checkout"
command -v go >/dev/null 2>&1 ||
  fail "Go is needed to build $validator_src (the strict manifest checker) and is not on PATH; install Go >= 1.26 and run this again"
# The stamp beside the binary records what it was built from: the hash of its sources (the
# sha256sum lines of go.mod, go.sum and *.go, by name, hashed again; test/deploy/helm-tools.ts
# computes the same to detect a stale binary) and the Go version.
sources_hash="$(cd "$validator_src" && find . -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -printf '%f\0' |
  LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
go_version="$(go env GOVERSION)"
stamp="$bin/k8s-validate.stamp"
want="$(printf 'sources %s\ngo %s' "$sources_hash" "$go_version")"
if [ -x "$bin/k8s-validate" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "provision: k8s-validate present and up to date ($bin/k8s-validate, sources ${sources_hash:0:12}, $go_version)"
  exit 0
fi
echo "provision: building k8s-validate from $validator_src into $bin (sources ${sources_hash:0:12}; the first build compiles the Kubernetes API packages)"
started=$(date +%s)
tmp_bin="$bin/.k8s-validate.$$"
# go.sum in the repository pins every dependency, so the checksum database is not needed.
(cd "$validator_src" && GOSUMDB=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 go build -trimpath -o "$tmp_bin" . 2>"$bin/.k8s-validate-build.log") || {
  rm -f "$tmp_bin"
  fail "go build of $validator_src failed:
$(tail -n 40 "$bin/.k8s-validate-build.log")"
}
rm -f "$bin/.k8s-validate-build.log"
mv -f "$tmp_bin" "$bin/k8s-validate"
printf '%s\n' "$want" >"$stamp"
echo "provision: built k8s-validate at $bin/k8s-validate in $(($(date +%s) - started)) s"
