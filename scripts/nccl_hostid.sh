#!/bin/sh
# Runs one MPI rank with its own NCCL host id, so that NCCL accepts several ranks of one
# communicator on the same GPU (it refuses "Duplicate GPU" otherwise) and connects them over
# loopback sockets. For correctness tests only: never time anything this way.
#   mpirun -np 4 scripts/nccl_hostid.sh ./build/tests/comm_tests
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}}
export NCCL_HOSTID="fathom-test-host$rank"
exec "$@"
