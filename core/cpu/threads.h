#pragma once
// Fathom's CPU thread pool, behind parallel_for (loops.h) and the GEMM tiles (matmul.cpp).
//
// Why not OpenMP: libgomp's idle threads spin (GOMP_SPINCOUNT, read once when the library
// loads, so a program cannot change it for itself) and a parallel region ends at a barrier that
// waits for every thread of the team. On a machine that another process keeps busy, one
// descheduled thread then stalls the region for a whole time slice while its teammates spin on
// the cores the other process needs: a training step was 10-18x slower than on one thread.
// Here a thread that has no work spins for a bounded time (FATHOM_SPIN_US, default 50) and then
// sleeps on a futex; a region is cut into more pieces than threads and each thread claims the
// next piece when it finishes one, so work never waits for a thread that is not running:
// the caller does the pieces nobody claimed, and waits only for pieces already being worked on.
#include <cstdint>
#include <functional>

namespace fathom::cpu {

// Runs fn(ctx, b, e) over [0, n) cut into pieces of `chunk` items (the last may be shorter), on
// at most `threads` threads, the calling one included, and returns when every piece is done,
// rethrowing the first exception a piece threw. Called while the pool is busy with another
// thread's region, or from inside a region, it runs fn(ctx, 0, n) on the calling thread.
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end);
void run_parallel(int64_t n, int64_t chunk, int threads, ChunkFn fn, void* ctx);

// The threads a region started from this thread may use: 1 inside a region or under a
// SingleThreadGuard, else get_num_threads().
int threads_here();

// The default thread count (core/threads.h says how it is chosen), from `env` (getenv's
// contract: null when unset), the cores in this process's affinity mask and the cores online.
// A malformed FATHOM_NUM_THREADS or OMP_NUM_THREADS is an Error naming it.
int default_num_threads(const std::function<const char*(const char*)>& env, int affinity_cores,
                        int online_cores);

}  // namespace fathom::cpu
