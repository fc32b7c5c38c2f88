#!/usr/bin/env sh
# Installs the pinned Helia stack used by cairn-net's interop tests (net/tests/helia),
# only when node_modules is missing or older than package-lock.json.
# --ignore-scripts: no install script is needed, and some try to download binaries.
set -eu
dir="$(cd "$(dirname "$0")/.." && pwd)/net/tests/helia"
if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
  echo "helia-setup: npm ci in $dir"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund)
  touch "$dir/node_modules"
else
  echo "helia-setup: $dir/node_modules is up to date"
fi
