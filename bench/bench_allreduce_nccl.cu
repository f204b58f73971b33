// Allreduce bandwidth on the GPU: DeepComm's ProcessGroup::allreduce on CUDA tensors (its NCCL
// backend: own non-blocking communicator and comm stream, events to and from the compute
// stream) against a raw ncclAllReduce on a communicator of our own, on the same buffer, in
// the same run, 4 KB to 256 MB in powers of 4 (f32, sum, in place). Built with CUDA only.
//
//   mpirun -np 2 build/bench/bench_allreduce_nccl [--min-bytes N] [--max-bytes N] [--iters N]
//
// As in bench_allreduce (the MPI one): the buffer is refilled before every call (untimed), the
// ranks line up on an MPI barrier, each call is timed on the host until its stream is idle
// (DeepComm: wait() then the compute stream; raw: its stream), an iteration's time is the
// slowest rank's, the contenders alternate going first, warm-up is untimed and the median is
// reported. Every element of the result is checked on the last iteration of each contender.
// Several ranks on one GPU need scripts/nccl_hostid.sh and then run over loopback sockets:
// the ratio still compares the two on the same transport, the bandwidth means nothing.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "core/cuda/runtime.h"
#include "core/ops/factory.h"

using namespace fathom;

namespace {

#define BENCH_NCCL_CHECK(call)                                                        \
  do {                                                                                \
    ncclResult_t r_ = (call);                                                         \
    if (r_ != ncclSuccess) {                                                          \
      std::fprintf(stderr, "bench_allreduce_nccl: %s: %s\n", #call, ncclGetErrorString(r_)); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
    }                                                                                 \
  } while (0)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Rank r's element i is (i % 13) + r; the sum over n ranks is exact in f32.
std::vector<float> pattern(int64_t count, int rank) {
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[size_t(i)] = float(i % 13 + rank);
  return v;
}
int64_t count_wrong(const std::vector<float>& got, int n) {
  int64_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != float(n * int64_t(i % 13) + n * (n - 1) / 2);
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t min_bytes = 4096, max_bytes = int64_t(256) << 20;
  int warmup = 5, iters = 0;  // 0: by size
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--min-bytes") min_bytes = v;
    else if (a == "--max-bytes") max_bytes = v;
    else if (a == "--warmup") warmup = int(v);
    else if (a == "--iters") iters = int(v);
    else {
      std::fprintf(stderr, "bench_allreduce_nccl: unknown option %s\n", a.c_str());
      return 2;
    }
  }
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

  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    int64_t count = bytes / 4;
    int it_n = iters ? iters : bytes <= (int64_t(16) << 20) ? 50 : 20;
    Tensor x = empty({count}, {DType::f32, info.device});
    float* p = x.data<float>();
    std::vector<float> host = pattern(count, rank), got(static_cast<size_t>(count));
    std::vector<double> ours, raw;
    int64_t wrong = 0;
    for (int it = 0; it < warmup + it_n; ++it) {
      double t[2] = {0, 0};  // DeepComm, raw NCCL
      for (int k = 0; k < 2; ++k) {
        bool deepcomm = (k == 0) == (it % 2 == 0);
        FATHOM_CUDA_CHECK(cudaMemcpy(p, host.data(), size_t(bytes), cudaMemcpyHostToDevice));
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_ms();
        if (deepcomm) {
          pg.allreduce(x)->wait();
          FATHOM_CUDA_CHECK(cudaStreamSynchronize(compute));
        } else {
          BENCH_NCCL_CHECK(ncclAllReduce(p, p, size_t(count), ncclFloat32, ncclSum, raw_comm, raw_stream));
          FATHOM_CUDA_CHECK(cudaStreamSynchronize(raw_stream));
        }
        t[deepcomm ? 0 : 1] = now_ms() - t0;
        if (it >= warmup + it_n - 2) {  // each contender's last run
          FATHOM_CUDA_CHECK(cudaMemcpy(got.data(), p, size_t(bytes), cudaMemcpyDeviceToHost));
          wrong += count_wrong(got, n);
        }
      }
      MPI_Allreduce(MPI_IN_PLACE, t, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (it >= warmup) {
        ours.push_back(t[0]);
        raw.push_back(t[1]);
      }
    }
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    double ms = median(ours), raw_ms = median(raw);
    double algbw = double(bytes) / (ms * 1e-3) / 1e9;
    double busbw = algbw * 2.0 * (n - 1) / n;
    if (rank == 0) {
      std::printf(
          "{\"bench\":\"allreduce\",\"backend\":\"nccl\",\"dtype\":\"f32\",\"bytes\":%lld,"
          "\"world\":%d,\"time_ms\":%.4f,\"algbw_gbs\":%.3f,\"busbw_gbs\":%.3f,"
          "\"raw_time_ms\":%.4f,\"ratio\":%.3f,\"iters\":%d,\"wrong\":%lld}\n",
          (long long)bytes, n, ms, algbw, busbw, raw_ms, raw_ms / ms, it_n, (long long)wrong);
      std::fflush(stdout);
    }
  }
  ncclCommDestroy(raw_comm);
  cudaStreamDestroy(raw_stream);
  comm::finalize();
  return 0;
}
