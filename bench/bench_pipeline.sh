#!/usr/bin/env bash
# Every pipeline schedule with p = 2 and p = 4 ranks (one thread each), one JSON line per
# (p, schedule) on stdout; extra flags go to bench_pipeline (--m, --unit-ms, --steps, --v):
#   bash bench/bench_pipeline.sh --m 8 --unit-ms 4     (after building bench_pipeline)
# With fewer cores than ranks the wall times are time-sliced; bubble_model is what to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FATHOM_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for np in 2 4; do
  mpirun -np "$np" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$build/bench/bench_pipeline" "$@"
done
