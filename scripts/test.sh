#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test through CTest.
# `scripts/test.sh --sanitize [ctest args]` is the sanitizer run instead (scripts/sanitize.sh:
# ASan + UBSan, CPU-only, in build-sanitize/). One line per phase; each phase's whole output is
# in build/logs/ (deps, configure, build, test .log); CTest's summary and the output of any
# failed test are printed at the end. FATHOM_VERBOSE=1 streams everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --sanitize ]; then
  shift
  exec bash scripts/sanitize.sh "$@"
fi
bash scripts/deps.sh --test
bash scripts/build.sh
source scripts/phase.sh
# Open MPI refuses root without these; multi-rank tests oversubscribe the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd "${FATHOM_BUILD_DIR:-build}"
phase_ctest test "test ${FATHOM_BUILD_DIR:-build}/" --timeout 900 "$@"
