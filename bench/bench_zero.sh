#!/usr/bin/env bash
# The distributed optimizer's memory per parameter and step time with 1, 2 and 4 data-parallel
# ranks (one OpenMP thread each), one JSON line per (dp, dtype, stage) on stdout:
#   bash bench/bench_zero.sh [--config tiny|small] [--steps N]     (after building bench_zero)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FATHOM_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for np in 1 2 4; do
  mpirun -np "$np" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$build/bench/bench_zero" "$@"
done
