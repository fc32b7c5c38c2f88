#!/usr/bin/env bash
# The long AFL++ run of docs/BENCHMARKS.md, "Fuzzing (issue 7)": each target in turn (one fuzzer
# process at a time, niced), until EXECS executions or SECONDS_CAP seconds, then one table row
# per target from AFL's fuzzer_stats. Usage, from fuzz/afl after `cargo afl build --release` and
# `cargo run -p cairn-fuzz -- seeds fuzz/afl/in` (see fuzz/README.md):
#     ./long-run.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
EXECS=${EXECS:-10500000}
SECONDS_CAP=${SECONDS_CAP:-5400}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dag_pb unixfs car bitswap cid_path)
mkdir -p out
for t in "${targets[@]}"; do
    rm -rf "out/$t"
    AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        nice -n 19 cargo afl fuzz -i "in/$t" -o "out/$t" -E "$EXECS" -V "$SECONDS_CAP" \
        target/release/cairn-fuzz-afl "$t" > "out/$t.log" 2>&1
done
echo "| target | executions | time (s) | execs/s | crashes | hangs | corpus | seeds | edges covered |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
    s="out/$t/default/fuzzer_stats"
    v() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$s"; }
    seeds=$(find "in/$t" -type f | wc -l)
    echo "| $t | $(v execs_done) | $(v run_time) | $(v execs_per_sec) | $(v saved_crashes) | $(v saved_hangs) | $(v corpus_count) | $seeds | $(v edges_found) of $(v total_edges) |"
done
