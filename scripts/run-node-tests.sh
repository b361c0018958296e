#!/usr/bin/env bash
# Runs every test file with node's own test runner (TypeScript through tsx).
# Arguments, if any, replace the default list of files.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  # test/interop is its own package (the tenant-security SDK interop suite): its test files
  # run with the others; node_modules (its dependencies) are never searched.
  mapfile -t files < <(find test -name node_modules -prune -o -name '*.test.ts' -print | sort)
fi
# Cloud SDKs must never reach instance-metadata addresses from a test: static
# credentials are configured, and metadata probing is switched off besides.
export AWS_EC2_METADATA_DISABLED=true
export METADATA_SERVER_DETECTION=none
export NO_GCE_CHECK=true
export KEYWARD_TEST_CACHE="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}"
# The Azure Key Vault stand-in serves HTTPS under a test CA (scripts/provision/azure-standin-tls.sh):
# trust that CA in addition to the system ones. Certificate checking stays on.
if [ -f "$KEYWARD_TEST_CACHE/azure-standin/ca.pem" ]; then
  export NODE_EXTRA_CA_CERTS="$KEYWARD_TEST_CACHE/azure-standin/ca.pem"
fi
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
