// The CPU thread pool (threads.h says why it is not OpenMP) and the thread-count setting.
#include "fathom/core/cpu/threads.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fathom/core/error.h"
#include "fathom/core/threads.h"

namespace fathom {
namespace cpu {
namespace {

using Clock = std::chrono::steady_clock;

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  // Returns at once when *word != expected (EAGAIN), on a wake, or spuriously: callers loop.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// A positive integer, or the first of a comma-separated list when `list` (OMP_NUM_THREADS
// may give one count per nesting level); 0 when `s` is not one.
int parse_count(const char* s, bool list) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  bool ok = end != s && errno == 0 && v >= 1 && v <= 1 << 16 && (*end == 0 || (list && *end == ','));
  return ok ? int(v) : 0;
}

int affinity_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

// How long an idle thread spins before it sleeps: long enough to catch the next op of a
// training step without a futex round trip (a few microseconds of bookkeeping apart), short
// enough that a loaded machine loses little to it.
Clock::duration spin_time() {
  static const Clock::duration d = [] {
    const char* s = std::getenv("FATHOM_SPIN_US");
    if (!s || !*s) return Clock::duration(std::chrono::microseconds(50));
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1000000)
      detail::fail("FATHOM_SPIN_US='", s, "': expected microseconds from 0 to 1000000");
    return Clock::duration(std::chrono::microseconds(v));
  }();
  return d;
}

// Spins on `ready` until it holds or `spin` has passed; true when it held.
template <class Ready>
bool spin_until(Ready ready, Clock::duration spin) {
  if (ready()) return true;
  if (spin.count() == 0) return false;
  auto deadline = Clock::now() + spin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (Clock::now() >= deadline) return ready();
  }
}

thread_local bool t_serial = false;  // inside a region, on a pool worker, or a SingleThreadGuard

struct Job {
  Job(ChunkFn f, void* c, int64_t n_, int64_t chunk_, int64_t chunks_)
      : fn(f), ctx(c), n(n_), chunk(chunk_), chunks(chunks_) {}
  ChunkFn fn;
  void* ctx;
  int64_t n, chunk, chunks;
  std::atomic<int64_t> next{0};
  std::mutex error_mu;
  std::exception_ptr error;

  // Claims pieces until none are left. A piece that throws ends the claiming for everyone.
  void run() {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      int64_t b = c * chunk;
      try {
        fn(ctx, b, std::min(n, b + chunk));
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu);
        if (!error) error = std::current_exception();
        next.store(chunks, std::memory_order_relaxed);
        return;
      }
    }
  }
};

// Each worker waits on a word of its own, so a region wakes exactly the workers it wants.
struct alignas(64) Worker {
  std::atomic<uint32_t> wake{0};      // bumped by a caller that wants this worker's help
  std::atomic<uint32_t> sleeping{0};  // 1 while in (or about to enter) futex_wait on `wake`
};

// All atomics below are sequentially consistent where two threads publish-then-check (a
// caller clears `job` then reads `active`; a worker bumps `active` then reads `job`): in any
// interleaving one of them sees the other's write, so no wake-up is lost and no worker reads a
// Job whose region has returned.
struct Pool {
  // The parent's pool in a forked child: kept reachable, for leak checkers, never used.
  Pool* abandoned = nullptr;
  std::mutex busy;  // held by the caller running a region: one region at a time
  std::atomic<Job*> job{nullptr};
  std::atomic<uint32_t> active{0};  // workers between joining and leaving the current job
  std::atomic<uint32_t> caller_sleeping{0};
  std::vector<std::unique_ptr<Worker>> workers;  // grows, never shrinks

  void worker_main(Worker* w) {
    t_serial = true;  // a kernel's body that calls parallel_for runs it inline
    uint32_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return w->wake.load() != seen; }, spin_time())) {
        w->sleeping.store(1);
        while (w->wake.load() == seen) futex_wait(&w->wake, seen);
        w->sleeping.store(0);
      }
      seen = w->wake.load();
      active.fetch_add(1);
      if (Job* j = job.load()) j->run();
      if (active.fetch_sub(1) == 1 && caller_sleeping.load()) futex_wake(&active);
    }
  }

  // Starts workers up to `want` (fewer if the system refuses threads); returns how many exist.
  int grow(int want) {
    while (int(workers.size()) < want) {
      auto w = std::make_unique<Worker>();
      try {
        // Detached: the pool lives until the process ends (it is never destroyed, so no worker
        // outlives what it uses during static destruction).
        std::thread(&Pool::worker_main, this, w.get()).detach();
      } catch (const std::system_error&) {
        break;
      }
      workers.push_back(std::move(w));
    }
    return int(workers.size());
  }

  void wake(Worker& w) {
    w.wake.fetch_add(1);
    if (w.sleeping.load()) futex_wake(&w.wake);
  }

  void wait_idle() {
    if (spin_until([&] { return active.load() == 0; }, spin_time())) return;
    caller_sleeping.store(1);
    for (uint32_t v; (v = active.load()) != 0;) futex_wait(&active, v);
    caller_sleeping.store(0);
  }
};

Pool* g_pool = nullptr;
std::atomic<int> g_threads{0};  // 0 until first read from the environment

Pool& pool() {
  static Pool* p = [] {
    g_pool = new Pool();
    // A forked child has none of the parent's threads: it starts with an empty pool (the
    // parent's, possibly locked mid-region at the fork, is abandoned in the child).
    pthread_atfork(nullptr, nullptr, [] {
      Pool* fresh = new Pool();
      fresh->abandoned = g_pool;
      g_pool = fresh;
    });
    return g_pool;
  }();
  (void)p;
  return *g_pool;
}

}  // namespace

void run_parallel(int64_t n, int64_t chunk, int threads, ChunkFn fn, void* ctx) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  int64_t chunks = (n + chunk - 1) / chunk;
  Pool& p = pool();
  std::unique_lock<std::mutex> lk(p.busy, std::try_to_lock);
  if (t_serial || threads <= 1 || chunks == 1 || !lk.owns_lock()) {
    fn(ctx, 0, n);
    return;
  }
  spin_time();  // a malformed FATHOM_SPIN_US throws here, not on a worker
  int helpers = int(std::min<int64_t>({p.grow(threads - 1), threads - 1, chunks - 1}));
  Job job{fn, ctx, n, chunk, chunks};
  t_serial = true;
  p.job.store(&job);
  for (int i = 0; i < helpers; ++i) p.wake(*p.workers[size_t(i)]);
  job.run();
  p.job.store(nullptr);
  p.wait_idle();
  t_serial = false;
  if (job.error) std::rethrow_exception(job.error);
}

int threads_here() {
  return t_serial ? 1 : get_num_threads();
}

int default_num_threads(const std::function<const char*(const char*)>& env, int affinity,
                        int online) {
  for (const char* var : {"FATHOM_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* v = env(var);
    if (!v || !*v) continue;
    bool omp = var[0] == 'O';
    if (int n = parse_count(v, omp)) return n;
    detail::fail(var, "='", v, "': expected a positive thread count",
                 omp ? " (or a comma-separated list, whose first count is used)" : "",
                 ", e.g. ", var, "=2");
  }
  int n = std::max(affinity, 1);
  // Ranks started side by side on one node each see the node's whole mask unless the launcher
  // bound them; they split the node's cores instead of each taking all of them.
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"}) {
    const char* v = env(var);
    int local = v ? parse_count(v, false) : 0;
    if (local > 1) return std::max(1, std::min(n, std::max(online, 1) / local));
    if (local == 1) break;
  }
  return n;
}

}  // namespace cpu

int get_num_threads() {
  int n = cpu::g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int d = cpu::default_num_threads([](const char* v) { return std::getenv(v); },
                                   cpu::affinity_cores(), online > 0 ? int(online) : 1);
  int expected = 0;
  cpu::g_threads.compare_exchange_strong(expected, d);
  return cpu::g_threads.load();
}

void set_num_threads(int n) {
  FATHOM_CHECK(n >= 1, "set_num_threads: ", n, " threads; expected at least 1");
  cpu::g_threads.store(n);  // a region already running keeps the threads it started with
}

SingleThreadGuard::SingleThreadGuard() : before_(cpu::t_serial) {
  cpu::t_serial = true;
}
SingleThreadGuard::~SingleThreadGuard() {
  cpu::t_serial = before_;
}

}  // namespace fathom
