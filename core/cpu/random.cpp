// Philox draws on the CPU. Element i takes lane i % 4 of block offset + i / 4, exactly as the
// CUDA kernels do, so a seed gives the same numbers on either device.
#include <cmath>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

template <class T, class F>
static void draw(const Tensor& out, PhiloxState s, F value_of) {
  T* p = static_cast<T*>(out.data_ptr());
  int64_t n = out.numel();
  parallel_for((n + 3) / 4, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      Philox4 r = philox(s.seed, s.stream, s.offset + uint64_t(blk));
      for (int64_t l = 0; l < 4 && blk * 4 + l < n; ++l) p[blk * 4 + l] = T(value_of(r, int(l)));
    }
  });
}

void uniform(const Tensor& out, PhiloxState s, double low, double high) {
  dispatch_float(out.dtype(), "uniform", [&]<class T>() {
    using A = acc_t<T>;
    draw<T>(out, s, [&](const Philox4& r, int l) {
      // Rounding can land on `high` in low precision; keep the interval half-open.
      A v = A(low) + A(high - low) * A(u01(r.v[l]));
      return v < A(high) ? v : A(low);
    });
  });
}

// Box-Muller on lane pairs (0,1) and (2,3): both outputs of a pair are used.
void normal(const Tensor& out, PhiloxState s, double mean, double std) {
  dispatch_float(out.dtype(), "normal", [&]<class T>() {
    using A = acc_t<T>;
    draw<T>(out, s, [&](const Philox4& r, int l) {
      int p = l & ~1;
      float u1 = (float(r.v[p] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
      float u2 = u01(r.v[p + 1]);
      float rad = std::sqrt(-2.0f * std::log(u1)), th = 6.2831853071795864f * u2;
      float z = (l & 1) ? rad * std::sin(th) : rad * std::cos(th);
      return A(mean) + A(std) * A(z);
    });
  });
}

}  // namespace fathom::cpu
