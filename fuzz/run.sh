#!/bin/sh
# Runs every fuzz target for a bounded time, one after the other (nightly Rust and
# cargo-fuzz: `cargo install cargo-fuzz`). Usage: fuzz/run.sh [SECONDS_EACH] [TARGET...]
# New inputs go to fuzz/corpus/<target>/ (not committed unless renamed seed-*); a finding
# stops its target and is written to fuzz/artifacts/<target>/.
set -eu
cd "$(dirname "$0")"
seconds="${1:-60}"
[ $# -gt 0 ] && shift
targets="${*:-path response_head chunked credentials api_key jwt config}"
cargo +nightly fuzz build
for t in $targets; do
  echo "== $t: ${seconds}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+.*DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' || true
done
