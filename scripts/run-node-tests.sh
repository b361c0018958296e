#!/usr/bin/env bash
# Runs every test file with node's own test runner (TypeScript through tsx).
# Arguments, if any, replace the default list of files.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find test -path test/interop -prune -o -name '*.test.ts' -print | sort)
fi
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
