// Allreduce bandwidth: DeepComm's ProcessGroup::allreduce against a raw MPI_Allreduce on the
// same buffer, in the same run, from 4 KB to 256 MB in powers of 4 (f32, sum, in place).
//
//   mpirun -np 2 build/bench/bench_allreduce [--min-bytes N] [--max-bytes N] [--warmup N] [--iters N]
//
// Each iteration refills the buffer, lines the ranks up with a barrier, times one call, and
// checks every element of the result (wrong elements are counted, never skipped). The timing
// loop and the JSON line are shared with bench_allreduce_nccl (allreduce_sweep.h).
// One JSON object per size on stdout (rank 0); prose on stderr.
#include <cstdint>

#include "bench/allreduce_sweep.h"
#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

int main(int argc, char** argv) {
  bench::SweepFlags f;
  if (!bench::parse_sweep_flags(argc, argv, "bench_allreduce", f)) return 2;
  const comm::InitInfo& info = comm::init();
  comm::ProcessGroup& pg = *info.world;
  int rank = pg.rank(), n = pg.size();
  if (rank == 0)
    std::fprintf(stderr, "bench_allreduce: %d ranks, MPI thread level %d, f32 sum in place\n", n,
                 info.mpi_thread_level);

  for (int64_t bytes = f.min_bytes; bytes <= f.max_bytes; bytes *= 4) {
    int64_t count = bytes / 4;
    int iters = f.iters                          ? f.iters
                : bytes <= (int64_t(1) << 20)  ? 200
                : bytes <= (int64_t(16) << 20) ? 40
                                               : 10;
    Tensor x = empty({count}, DType::f32);
    float* p = x.data<float>();
    int64_t wrong = 0;
    bench::SweepTimes t = bench::time_sweep_point(
        f.warmup, iters, [&] { bench::fill(p, count, rank); }, [&] { pg.allreduce(x)->wait(); },
        [&] { MPI_Allreduce(MPI_IN_PLACE, p, int(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); },
        [&](bool) { wrong += bench::count_wrong(p, count, n); });
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) bench::print_sweep_point("mpi", bytes, n, t, iters, wrong);
  }
  comm::finalize();
  return 0;
}
