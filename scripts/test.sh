#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks formatting and lints,
# then runs every test of the workspace (unit, property, FUSE, network and interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export CARGO_TERM_COLOR=never CAIRN_REQUIRE_KUBO=1
echo "== cargo fmt --all --check"
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test --workspace"
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
