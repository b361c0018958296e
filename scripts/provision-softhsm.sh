#!/usr/bin/env bash
# Makes sure SoftHSM2 (the PKCS#11 HSM the tests use) is installed; installs it from
# Debian/Ubuntu packages when it is missing, and says so. Tokens are created per test
# run in temporary directories, never in the system token store.
set -euo pipefail
module="${KEYWARD_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
if command -v softhsm2-util >/dev/null 2>&1 && [ -f "$module" ]; then
  echo "provision: SoftHSM2 present ($(softhsm2-util --version), module $module)"
  exit 0
fi
echo "provision: SoftHSM2 is missing; installing the Debian package softhsm2 with apt-get"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "provision: cannot install softhsm2: not root and no sudo. Install it yourself (apt-get install softhsm2)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq softhsm2 >/dev/null
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -f "$module" ]; then
  echo "provision: softhsm2 installed, but $module is not there; set KEYWARD_PKCS11_MODULE to its path" >&2
  exit 1
fi
echo "provision: installed SoftHSM2 $(softhsm2-util --version)"
