#!/usr/bin/env bash
# fuzz_checkpoint over a fresh seed corpus, briefly: run_fuzz.sh FUZZER SEEDS_PROGRAM
# Passes when libFuzzer ends its runs without a finding (it exits nonzero on a crash, an ASan
# report, a leak, an uncaught exception or an allocation over -malloc_limit_mb).
set -euo pipefail
fuzzer=$1 seeds=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/fathom_fuzz_XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/seeds" "$work/corpus"
# The seed program starts MPI, which leaves memory at exit: no leak check for it.
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$seeds" "$work/seeds"
cd "$work"  # crash-* files land here (and are printed below)
if ! "$fuzzer" -runs=${FATHOM_FUZZ_RUNS:-100000} -max_total_time=${FATHOM_FUZZ_SECONDS:-30} \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 "$work/corpus" "$work/seeds"; then
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$f" ] && { echo "finding $f:"; od -A d -t x1 "$f" | head -n 20; }
  done
  exit 1
fi
echo "fuzz_checkpoint: no finding"
