#!/usr/bin/env bash
# The main job: build cairn, create a repo, add a folder and mount it read-only.
#   ./scripts/run.sh [FOLDER] [MOUNTPOINT]
# FOLDER defaults to this project's docs/, MOUNTPOINT to ./mnt; the repo is $CAIRN_REPO or ./.cairn-repo.
# The mount stays up until Ctrl-C, which unmounts cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --main
cargo build --release -p cairn
CAIRN=./target/release/cairn
export CAIRN_REPO="${CAIRN_REPO:-$PWD/.cairn-repo}"
folder="${1:-docs}"
mnt="${2:-$PWD/mnt}"
[ -d "$CAIRN_REPO" ] || "$CAIRN" init
cid=$("$CAIRN" add -r -Q "$folder")
echo "added $folder as $cid (repo $CAIRN_REPO)"
mkdir -p "$mnt"
echo "mounting $cid at $mnt; try: ls -la $mnt; press Ctrl-C to unmount"
exec "$CAIRN" mount "$cid" "$mnt"
