#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job: Fashion-MNIST
# trained data-parallel by two ranks on the CPU (global batch 128, 64 per rank), printing loss,
# samples/s and test accuracy. Extra arguments go to the example (e.g. --compress 24).
# Set-up is one line per phase (logs in build/logs/); the training prints live.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One OpenMP thread per rank: two ranks share the machine's cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
echo "run: mpirun -np 2 ${FATHOM_BUILD_DIR:-build}/examples/fashion_mnist $*" >&2
exec mpirun -np 2 --oversubscribe --bind-to none "${FATHOM_BUILD_DIR:-build}"/examples/fashion_mnist "$@"
