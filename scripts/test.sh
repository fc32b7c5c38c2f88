#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks formatting and lints,
# then runs every test of the workspace (unit, property, FUSE, network and interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# A clean build gains nothing from incremental compilation's bookkeeping.
export CARGO_TERM_COLOR=never CAIRN_REQUIRE_KUBO=1 CARGO_INCREMENTAL=0
echo "== cargo fmt --all --check"
cargo fmt --all --check
# The lints run inside the one build the tests use: clippy-driver wraps rustc for the workspace's
# own crates (what `cargo clippy` does, but in a full build rather than a check), so the
# dependencies compile once instead of once for clippy and again for the tests. The result is
# the same as `cargo clippy --workspace --all-targets -- -D warnings`.
echo "== clippy (-D warnings) in the build of every target"
export RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo build --workspace --all-targets
echo "== cargo test --workspace"
cargo test --workspace -- --test-threads=2
