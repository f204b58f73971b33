#pragma once
// What bench_allreduce (DeepComm over MPI vs MPI_Allreduce) and bench_allreduce_nccl (DeepComm
// over NCCL vs ncclAllReduce) share: the flags, the size sweep's timing loop and the JSON line,
// so both measure and report the same way.
//   algbw = bytes / time; busbw = algbw * 2 (n - 1) / n, the bytes each rank's link carries in
//   a ring allreduce (nccl-tests' doc/PERFORMANCE.md); ratio = raw time / DeepComm time.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace fathom::bench {

struct SweepFlags {
  int64_t min_bytes = 4096, max_bytes = int64_t(256) << 20;
  int warmup = 5, iters = 0;  // iters 0: the benchmark picks by size
};

// --min-bytes N --max-bytes N --warmup N --iters N; false (after a message) on anything else.
inline bool parse_sweep_flags(int argc, char** argv, const char* program, SweepFlags& f) {
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: option %s needs a value\n", program, a.c_str());
      return false;
    }
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--min-bytes") f.min_bytes = v;
    else if (a == "--max-bytes") f.max_bytes = v;
    else if (a == "--warmup") f.warmup = int(v);
    else if (a == "--iters") f.iters = int(v);
    else {
      std::fprintf(stderr, "%s: unknown option %s\n", program, a.c_str());
      return false;
    }
  }
  if (f.min_bytes < 4 || f.max_bytes < f.min_bytes || f.warmup < 0 || f.iters < 0) {
    std::fprintf(stderr, "%s: need 4 <= --min-bytes <= --max-bytes and --warmup, --iters >= 0\n",
                 program);
    return false;
  }
  return true;
}

// Rank r's element i is (i % 13) + r: the sum over n ranks, n (i % 13) + n (n - 1) / 2, is
// exact in f32.
inline void fill(float* p, int64_t count, int rank) {
  for (int64_t i = 0; i < count; ++i) p[i] = float(i % 13 + rank);
}
inline int64_t count_wrong(const float* p, int64_t count, int n) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i) wrong += p[i] != float(n * (i % 13) + n * (n - 1) / 2);
  return wrong;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Medians over `iters` timed iterations (after `warmup` untimed ones) of DeepComm's call and
// the raw one. Each iteration runs both, alternating which goes first so drift on a shared
// machine hits both alike: refill() (untimed), an MPI barrier, the call (ours() or raw(),
// timed until its result is there), then check(last) (untimed; last is true on the final
// iteration). A time is the slowest rank's, since a collective is as fast as its last rank.
struct SweepTimes {
  double ms = 0, raw_ms = 0;
};
template <class Refill, class Ours, class Raw, class Check>
SweepTimes time_sweep_point(int warmup, int iters, Refill refill, Ours ours, Raw raw, Check check) {
  std::vector<double> a, b;
  for (int it = 0; it < warmup + iters; ++it) {
    bool last = it == warmup + iters - 1;
    double t[2] = {0, 0};  // DeepComm, raw
    for (int k = 0; k < 2; ++k) {
      bool deepcomm = (k == 0) == (it % 2 == 0);
      refill();
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now_ms();
      if (deepcomm)
        ours();
      else
        raw();
      t[deepcomm ? 0 : 1] = now_ms() - t0;
      check(last);
    }
    MPI_Allreduce(MPI_IN_PLACE, t, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (it >= warmup) {
      a.push_back(t[0]);
      b.push_back(t[1]);
    }
  }
  return {median(a), median(b)};
}

// One JSON line on stdout (rank 0 calls it). `wrong` is summed over ranks by the caller.
inline void print_sweep_point(const char* backend, int64_t bytes, int world, SweepTimes t,
                              int iters, int64_t wrong) {
  double algbw = double(bytes) / (t.ms * 1e-3) / 1e9;
  double busbw = algbw * 2.0 * (world - 1) / world;
  std::printf(
      "{\"bench\":\"allreduce\",\"backend\":\"%s\",\"dtype\":\"f32\",\"bytes\":%lld,"
      "\"world\":%d,\"time_ms\":%.4f,\"algbw_gbs\":%.3f,\"busbw_gbs\":%.3f,"
      "\"raw_time_ms\":%.4f,\"ratio\":%.3f,\"iters\":%d,\"wrong\":%lld}\n",
      backend, (long long)bytes, world, t.ms, algbw, busbw, t.raw_ms, t.raw_ms / t.ms, iters,
      (long long)wrong);
  std::fflush(stdout);
}

}  // namespace fathom::bench
