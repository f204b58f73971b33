#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test through CTest.
# `scripts/test.sh --sanitize [ctest args]` is the sanitizer run instead (scripts/sanitize.sh:
# ASan + UBSan, CPU-only, in build-sanitize/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --sanitize ]; then
  shift
  exec bash scripts/sanitize.sh "$@"
fi
bash scripts/deps.sh
bash scripts/build.sh
# Open MPI refuses root without these; multi-rank tests oversubscribe the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd "${FATHOM_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
