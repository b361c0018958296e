# Sourced (not run: scripts/provision-emulators.sh runs scripts/provision/*.sh only) by provisioning scripts that build a Go tool from the module proxy (actionlint.sh, helm.sh).
# The checksum database is not consulted (GOSUMDB=off: it is not reachable from every build machine), so the
# module zip is checked against the hash the script pins instead. The sourcing script defines fail().

# download_checked_module WORKDIR MODULE VERSION SUM: fetches MODULE@VERSION into the module cache and refuses it
# unless its hash is SUM; a `go install` of the same version then reuses the checked download.
download_checked_module() {
  local work="$1" module="$2" version="$3" sum="$4" got
  (cd "$work" && GOSUMDB=off GOFLAGS= go mod download -json "$module@$version" >"$work/download.json" 2>"$work/download.log") ||
    fail "go mod download $module@$version failed (is the Go module proxy reachable?):
$(cat "$work/download.log")"
  got="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p' "$work/download.json")"
  [ "$got" = "$sum" ] ||
    fail "$module@$version from the module proxy has hash '$got', expected $sum; refusing to build it"
}
