#pragma once
// Where a training thread's step time goes, by phase: a breakdown for benchmarks
// (bench/bench_dp_step.cpp), cheaper and coarser than a trace. Off by default; then a Scope is
// one thread-local load. On, on the thread that called start() only (the training thread: the
// time a step takes is that thread's), scopes are exclusive: a scope inside another pauses the
// outer one, so the phases never count a nanosecond twice and their sum is at most the wall time.
//
//   phase::start();                        // on the training thread
//   ... steps ...
//   phase::Totals t = phase::totals();     // seconds per phase since start() or reset()
//
// Recorded by: ops::matmul (gemm), Optimizer::step and DistributedOptimizer's step (optimizer),
// comm's Work::wait (comm_wait: what the training thread waits, or runs inline, of a
// collective), DDP's moves of gradients into and out of buckets (bucket_copy), and the host and
// device allocators (alloc).
#include <array>
#include <cstddef>
#include <cstdint>

namespace fathom::phase {

enum class Phase : int { gemm, optimizer, comm_wait, bucket_copy, alloc };
inline constexpr int kNumPhases = 5;
const char* name(Phase p);

void start();  // on the calling thread; zeroes its totals
void stop();
bool active();  // on the calling thread
void reset();

struct Totals {
  std::array<double, kNumPhases> seconds{};
  double operator[](Phase p) const { return seconds[size_t(p)]; }
  double sum() const;
};
Totals totals();  // the calling thread's, up to now (an open scope counts up to now)

namespace detail {
extern thread_local bool t_active;
void enter(Phase p);
void leave();
}  // namespace detail

class Scope {
 public:
  explicit Scope(Phase p) : on_(detail::t_active) {
    if (on_) detail::enter(p);
  }
  ~Scope() {
    if (on_) detail::leave();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool on_;
};

}  // namespace fathom::phase
