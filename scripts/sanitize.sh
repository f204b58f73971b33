#!/usr/bin/env bash
# The sanitizer run (`scripts/test.sh --sanitize`, and the second half of .ci/run): builds the
# CPU library and the core, autograd, data, log, nn, optim, comm, parallel and checkpoint tests with
# AddressSanitizer and UndefinedBehaviorSanitizer in build-sanitize/ (no examples, benchmarks,
# launcher or install test), then runs them through CTest. Any finding fails its test: UBSan
# is built non-recovering and ASan halts on the first error. Extra arguments go to ctest
# (e.g. -R data_tests). FATHOM_SANITIZE_LAYERS (env) overrides the list of test layers.
# One line per phase, as scripts/test.sh; the logs are in build-sanitize/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FATHOM_BUILD_DIR=${FATHOM_SANITIZE_BUILD_DIR:-build-sanitize}
bash scripts/deps.sh
layers=${FATHOM_SANITIZE_LAYERS:-core;autograd;data;log;nn;optim;comm;parallel;checkpoint;reference}
# -O1 -g1: ASan's recommended optimization level, with line tables for the reports' frames.
FATHOM_CUDA=OFF bash scripts/build.sh \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DFATHOM_SANITIZE=address,undefined -DFATHOM_BUILD_EXAMPLES=OFF \
  "-DFATHOM_TEST_LAYERS=${layers}"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# halt_on_error: the first error ends the process (and, under mpirun, the job) with a failure.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
source scripts/phase.sh
cd "$FATHOM_BUILD_DIR"
# Two passes. LeakSanitizer is on for the tests that do not start MPI, and off for the MPI
# tests (labels comm, parallel: all call MPI_Init, comm_tests_np1 as a singleton): Open MPI
# leaves about 120 KB in some 3,350 allocations per rank at exit (libopen-pal, libmpi, hwloc,
# and MCA components already unloaded, so their frames are "<unknown module>" and cannot be
# suppressed by library name); no frame of those reports is in Fathom.
status=0
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1" phase_ctest test-leaks "test $FATHOM_BUILD_DIR/ without MPI (leak checks on)" \
  --timeout 900 -LE "comm|parallel" "$@" || status=1
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" phase_ctest test-mpi "test $FATHOM_BUILD_DIR/ with MPI (leak checks off)" \
  --timeout 900 -L "comm|parallel" "$@" || status=1
exit $status
