#!/usr/bin/env bash
# `npm test`: provisions what the tests need, then typecheck, lint, build and every
# test with node:test. Run from a fresh clone: it installs what is missing and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "node $(node --version), npm $(npm --version 2>/dev/null)"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

step "provisioning SoftHSM2"
bash scripts/provision-softhsm.sh

step "provisioning KMS emulators (cache: ${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test})"
bash scripts/provision-emulators.sh

step "typecheck (tsc --noEmit)"
npx tsc -p tsconfig.json --noEmit

step "lint (eslint, type-aware)"
npx eslint .

step "build (tsc -p tsconfig.build.json)"
npx tsc -p tsconfig.build.json

step "tests (node:test)"
bash scripts/run-node-tests.sh
