// Allreduce bandwidth on the GPU: DeepComm's ProcessGroup::allreduce on CUDA tensors (its NCCL
// backend: own non-blocking communicator and comm stream, events to and from the compute
// stream) against a raw ncclAllReduce on a communicator of our own, on the same buffer, in
// the same run, 4 KB to 256 MB in powers of 4 (f32, sum, in place). Built with CUDA only.
//
//   mpirun -np 2 build/bench/bench_allreduce_nccl [--min-bytes N] [--max-bytes N] [--iters N]
//
// The timing loop and the JSON line are bench_allreduce's (allreduce_sweep.h); each call is
// timed on the host until its stream is idle (DeepComm: wait() then the compute stream; raw:
// its own stream). Every element of the result is checked on the last iteration of each.
// Several ranks on one GPU need scripts/nccl_hostid.sh and then run over loopback sockets:
// the ratio still compares the two on the same transport, the bandwidth means nothing.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdint>

#include "bench/allreduce_sweep.h"
#include "fathom/comm/comm.h"
#include "fathom/core/cuda/runtime.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

#define BENCH_NCCL_CHECK(call)                                                        \
  do {                                                                                \
    ncclResult_t r_ = (call);                                                         \
    if (r_ != ncclSuccess) {                                                          \
      std::fprintf(stderr, "bench_allreduce_nccl: %s: %s\n", #call, ncclGetErrorString(r_)); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
    }                                                                                 \
  } while (0)

int main(int argc, char** argv) {
  bench::SweepFlags f;
  if (!bench::parse_sweep_flags(argc, argv, "bench_allreduce_nccl", f)) return 2;
  const comm::InitInfo& info = comm::init();
  if (!info.device.is_cuda()) {
    std::fprintf(stderr, "bench_allreduce_nccl: no CUDA device on this machine\n");
    return 2;
  }
  comm::ProcessGroup& pg = *info.world;
  int rank = pg.rank(), n = pg.size(), dev = info.device.index;
  FATHOM_CUDA_CHECK(cudaSetDevice(dev));

  // The raw contender: a plain blocking NCCL communicator and a stream of its own.
  ncclUniqueId id;
  if (rank == 0) BENCH_NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t raw_comm;
  BENCH_NCCL_CHECK(ncclCommInitRank(&raw_comm, n, id, rank));
  cudaStream_t raw_stream;
  FATHOM_CUDA_CHECK(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
  cudaStream_t compute = cuda::current_stream(dev);
  if (rank == 0)
    std::fprintf(stderr, "bench_allreduce_nccl: %d ranks on cuda:%d, f32 sum in place\n", n, dev);

  for (int64_t bytes = f.min_bytes; bytes <= f.max_bytes; bytes *= 4) {
    int64_t count = bytes / 4;
    int iters = f.iters ? f.iters : bytes <= (int64_t(16) << 20) ? 50 : 20;
    Tensor x = empty({count}, {DType::f32, info.device});
    float* p = x.data<float>();
    std::vector<float> host(static_cast<size_t>(count)), got(static_cast<size_t>(count));
    bench::fill(host.data(), count, rank);
    int64_t wrong = 0;
    bench::SweepTimes t = bench::time_sweep_point(
        f.warmup, iters,
        [&] { FATHOM_CUDA_CHECK(cudaMemcpy(p, host.data(), size_t(bytes), cudaMemcpyHostToDevice)); },
        [&] {
          pg.allreduce(x)->wait();
          FATHOM_CUDA_CHECK(cudaStreamSynchronize(compute));
        },
        [&] {
          BENCH_NCCL_CHECK(ncclAllReduce(p, p, size_t(count), ncclFloat32, ncclSum, raw_comm, raw_stream));
          FATHOM_CUDA_CHECK(cudaStreamSynchronize(raw_stream));
        },
        [&](bool last) {
          if (!last) return;  // each contender's final run
          FATHOM_CUDA_CHECK(cudaMemcpy(got.data(), p, size_t(bytes), cudaMemcpyDeviceToHost));
          wrong += bench::count_wrong(got.data(), count, n);
        });
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) bench::print_sweep_point("nccl", bytes, n, t, iters, wrong);
  }
  ncclCommDestroy(raw_comm);
  cudaStreamDestroy(raw_stream);
  comm::finalize();
  return 0;
}
