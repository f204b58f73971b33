#pragma once
// The scope that puts the calling thread in the mode core/denormals.h describes for the length of
// one kernel (parallel_for and each piece a pool thread runs), and back after: two MXCSR
// accesses, a few cycles, against kernels of thousands of elements.
#include <atomic>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fathom::cpu {

extern std::atomic<int> g_flush_denormal;  // -1 until read from the environment, else 0 or 1
int read_flush_denormal();

inline bool flush_denormal_on() {
  int v = g_flush_denormal.load(std::memory_order_relaxed);
  return (v < 0 ? read_flush_denormal() : v) == 1;
}

class FlushDenormalScope {
 public:
  FlushDenormalScope() {
#if defined(__x86_64__)
    if (!flush_denormal_on()) return;
    saved_ = _mm_getcsr();
    unsigned want = saved_ | kFtz | kDaz;
    if (want != saved_) {
      _mm_setcsr(want);
      restore_ = true;
    }
#endif
  }
  ~FlushDenormalScope() {
#if defined(__x86_64__)
    if (restore_) _mm_setcsr(saved_);
#endif
  }
  FlushDenormalScope(const FlushDenormalScope&) = delete;
  FlushDenormalScope& operator=(const FlushDenormalScope&) = delete;

 private:
  static constexpr unsigned kFtz = 1u << 15, kDaz = 1u << 6;  // MXCSR bits
  unsigned saved_ = 0;
  bool restore_ = false;
};

}  // namespace fathom::cpu
