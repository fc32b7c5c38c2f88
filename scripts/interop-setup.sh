#!/usr/bin/env bash
# Installs the JS reference implementation (ipfs-unixfs-importer) used by tests/tests/interop_cids.rs.
# Needs Node.js >= 20 and npm; versions are pinned in tests/interop/package-lock.json.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/interop" && pwd)"
command -v node >/dev/null || { echo "interop-setup: node not found; install Node.js >= 20" >&2; exit 1; }
command -v npm >/dev/null || { echo "interop-setup: npm not found; install npm" >&2; exit 1; }
if [ ! -d "$dir/node_modules/ipfs-unixfs-importer" ]; then
  echo "interop-setup: installing JS importer in $dir" >&2
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund)
fi
