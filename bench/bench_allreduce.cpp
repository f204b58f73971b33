// Allreduce bandwidth: DeepComm's ProcessGroup::allreduce against a raw MPI_Allreduce on the
// same buffer, in the same run, from 4 KB to 256 MB in powers of 4 (f32, sum, in place).
//
//   mpirun -np 2 build/bench/bench_allreduce [--min-bytes N] [--max-bytes N] [--warmup N] [--iters N]
//
// Each iteration refills the buffer, lines the ranks up with a barrier, times one call, and
// checks every element of the result (wrong elements are counted, never skipped). The two
// contenders alternate which goes first, so drift on a shared machine hits both alike. An
// iteration's time is the slowest rank's: a collective is as fast as its last rank. Untimed
// warm-up first; the median is reported.
//   algbw = bytes / time; busbw = algbw * 2 (n - 1) / n, the bytes each rank's link carries in
//   a ring allreduce (nccl-tests' doc/PERFORMANCE.md); ratio = raw time / DeepComm time.
// One JSON object per size on stdout (rank 0); prose on stderr.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "core/ops/factory.h"

using namespace fathom;

namespace {

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

// Rank r's element i is (i % 13) + r: the sum over n ranks, n (i % 13) + n (n - 1) / 2, is
// exact in f32.
void fill(float* p, int64_t count, int rank) {
  for (int64_t i = 0; i < count; ++i) p[i] = float(i % 13 + rank);
}
int64_t count_wrong(const float* p, int64_t count, int n) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i)
    wrong += p[i] != float(n * (i % 13) + n * (n - 1) / 2);
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t min_bytes = 4096, max_bytes = int64_t(256) << 20;
  int warmup = 5, iters = 0;  // 0: by size (more for small sizes, whose times are noisier)
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--min-bytes") min_bytes = v;
    else if (a == "--max-bytes") max_bytes = v;
    else if (a == "--warmup") warmup = int(v);
    else if (a == "--iters") iters = int(v);
    else {
      std::fprintf(stderr, "bench_allreduce: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const comm::InitInfo& info = comm::init();
  comm::ProcessGroup& pg = *info.world;
  int rank = pg.rank(), n = pg.size();
  if (rank == 0)
    std::fprintf(stderr, "bench_allreduce: %d ranks, MPI thread level %d, f32 sum in place\n", n,
                 info.mpi_thread_level);

  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    int64_t count = bytes / 4;
    int it_n = iters                             ? iters
               : bytes <= (int64_t(1) << 20)  ? 200
               : bytes <= (int64_t(16) << 20) ? 40
                                              : 10;
    Tensor x = empty({count}, DType::f32);
    float* p = x.data<float>();
    std::vector<double> ours, raw;
    int64_t wrong = 0;
    for (int it = 0; it < warmup + it_n; ++it) {
      double t[2] = {0, 0};  // DeepComm, raw MPI
      for (int k = 0; k < 2; ++k) {
        bool deepcomm = (k == 0) == (it % 2 == 0);
        fill(p, count, rank);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_ms();
        if (deepcomm)
          pg.allreduce(x)->wait();
        else
          MPI_Allreduce(MPI_IN_PLACE, p, int(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[deepcomm ? 0 : 1] = now_ms() - t0;
        wrong += count_wrong(p, count, n);
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
          "{\"bench\":\"allreduce\",\"backend\":\"mpi\",\"dtype\":\"f32\",\"bytes\":%lld,"
          "\"world\":%d,\"time_ms\":%.4f,\"algbw_gbs\":%.3f,\"busbw_gbs\":%.3f,"
          "\"raw_time_ms\":%.4f,\"ratio\":%.3f,\"iters\":%d,\"wrong\":%lld}\n",
          (long long)bytes, n, ms, algbw, busbw, raw_ms, raw_ms / ms, it_n, (long long)wrong);
      std::fflush(stdout);
    }
  }
  comm::finalize();
  return 0;
}
