#!/usr/bin/env bash
# Installs the local KMS emulators the tests use into a cache outside the repository
# (KEYWARD_TEST_CACHE, default ~/.cache/keyward-test), each only when missing, and
# says what it does. One script per emulator in scripts/provision/.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEYWARD_TEST_CACHE="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}"
mkdir -p "$KEYWARD_TEST_CACHE"
shopt -s nullglob
for script in scripts/provision/*.sh; do
  bash "$script"
done
