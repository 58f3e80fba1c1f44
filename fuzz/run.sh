#!/usr/bin/env bash
# Fuzzes every target for 10 million executions (or 30 minutes, whichever comes first), new
# inputs in fuzz/work/<target> (not committed), crashes in fuzz/artifacts/<target>. Needs
# `cargo install cargo-fuzz`; builds without a sanitizer, which works on stable Rust.
# Usage: bash fuzz/run.sh [TARGET…]   (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-10000000}
seconds=${FUZZ_SECONDS:-1800}
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi
cargo fuzz build --sanitizer none -O
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
  echo "== $target"
  cargo fuzz run --sanitizer none -O "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 2>&1 |
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|SUMMARY|Test unit written' || true
done
