// CPU gather and scatter-add along the middle dim of [A, V, B]: index_select and index_add
// (embedding forward and backward). Indices arrive validated and contiguous i64.
#include <cstdint>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

namespace {

// Calls f.template operator()<U>() with an unsigned type as wide as one element: a gather only
// moves bits, so one instantiation serves every dtype of that width.
template <class F>
void dispatch_width(size_t width, F&& f) {
  switch (width) {
    case 1: return f.template operator()<uint8_t>();
    case 2: return f.template operator()<uint16_t>();
    case 4: return f.template operator()<uint32_t>();
    case 8: return f.template operator()<uint64_t>();
    default: detail::fail("index_select: unsupported element width ", width);
  }
}

}  // namespace

void index_select(const Tensor& x, const Tensor& index, const Tensor& out) {
  int64_t A = x.size(0), V = x.size(1), B = x.size(2), n = index.size(0);
  const int64_t* ip = static_cast<const int64_t*>(index.data_ptr());
  dispatch_width(itemsize(x.dtype()), [&]<class U>() {
    const U* xp = static_cast<const U*>(x.data_ptr());
    U* op = static_cast<U*>(out.data_ptr());
    parallel_for(A * n, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(B, 1)),
                 [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        int64_t a = u / n, i = u % n;
        const U* src = xp + (a * V + ip[i]) * B;
        U* dst = op + u * B;
        for (int64_t j = 0; j < B; ++j) dst[j] = src[j];
      }
    });
  });
}

// Repeated indices must accumulate, and in a fixed order. Each work item owns a disjoint slab of
// x (a range of A, of target rows V, and of columns B) and walks all n indices in order, adding
// only those landing in its slab: no two threads touch one element, and every element sums its
// contributions in index order, whatever the thread count.
void index_add(const Tensor& x, const Tensor& index, const Tensor& src) {
  int64_t A = x.size(0), V = x.size(1), B = x.size(2), n = index.size(0);
  const int64_t* ip = static_cast<const int64_t*>(index.data_ptr());
  dispatch_all(x.dtype(), "index_add_", [&]<class T>() {
    using Acc = acc_t<T>;
    T* xp = static_cast<T*>(x.data_ptr());
    const T* sp = static_cast<const T*>(src.data_ptr());
    constexpr int64_t kColBlock = 256;
    int64_t bw = std::min<int64_t>(std::max<int64_t>(B, 1), kColBlock);
    int64_t col_blocks = (B + bw - 1) / bw;
    // Split the target rows too when A and B alone give too few items to keep threads busy.
    int64_t want = A * n * B >= kParallelGrain ? 4 * int64_t(threads_here()) : 1;
    int64_t v_blocks = std::clamp<int64_t>(want / std::max<int64_t>(A * col_blocks, 1), 1,
                                           std::max<int64_t>(V, 1));
    int64_t vw = (V + v_blocks - 1) / v_blocks;
    v_blocks = V ? (V + vw - 1) / vw : 0;
    int64_t items = A * v_blocks * col_blocks;
    parallel_for(items, want > 1 ? 1 : items, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        int64_t c = u % col_blocks, vb = (u / col_blocks) % v_blocks;
        int64_t a = u / (col_blocks * v_blocks);
        int64_t v0 = vb * vw, v1 = std::min(V, v0 + vw);
        int64_t j0 = c * bw, j1 = std::min(B, j0 + bw);
        for (int64_t i = 0; i < n; ++i) {
          int64_t v = ip[i];
          if (v < v0 || v >= v1) continue;
          T* dst = xp + (a * V + v) * B;
          const T* s = sp + (a * n + i) * B;
          for (int64_t j = j0; j < j1; ++j) dst[j] = T(Acc(dst[j]) + Acc(s[j]));
        }
      }
    });
  });
}

}  // namespace fathom::cpu
