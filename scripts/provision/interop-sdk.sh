#!/usr/bin/env bash
# Installs the interop suite's own dependencies (test/interop: the published IronCore Labs
# tenant-security Node SDK, AGPL-licensed, kept out of Keyward's dependency tree) from its
# lock file, only when they are missing or the lock file changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="test/interop"
sdk="$dir/node_modules/@ironcorelabs/tenant-security-nodejs"
lock="$dir/package-lock.json"
installed="$dir/node_modules/.package-lock.json"

[ -f "$lock" ] || {
  echo "provision: interop-sdk: $lock is missing" >&2
  exit 1
}

if [ -d "$sdk" ] && [ -f "$installed" ] && ! [ "$lock" -nt "$installed" ]; then
  echo "provision: interop SDK present ($(node -p "require('./$sdk/package.json').version" 2>/dev/null || echo '?'), $sdk)"
  exit 0
fi

echo "provision: installing the interop suite's dependencies (npm ci --prefix $dir)"
started=$(date +%s)
npm ci --no-audit --no-fund --prefix "$dir"
echo "provision: installed the interop SDK $(node -p "require('./$sdk/package.json').version") in $(($(date +%s) - started)) s"
