#pragma once
// Building blocks of the CPU kernels: dtype dispatch and a strided N-d loop that hands each
// thread contiguous-ish rows, so the innermost loop is a plain, vectorizable for-loop.
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "fathom/core/cpu/denormals.h"
#include "fathom/core/cpu/threads.h"
#include "fathom/core/tensor.h"

// On a kernel's per-element lambda: the loop around it only vectorizes once the body is inlined,
// and GCC declines to inline bodies with sqrt/div on its own.
#define FATHOM_INLINE __attribute__((always_inline))

namespace fathom::cpu {

// The tensor's first element as T* (the caller has dispatched on its dtype).
template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// Calls f.template operator()<T>() for the C++ type of dt.
template <class F>
decltype(auto) dispatch_all(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: return f.template operator()<bf16>();
    case DType::f16: return f.template operator()<f16>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::i64: return f.template operator()<int64_t>();
    case DType::u8: return f.template operator()<uint8_t>();
    case DType::boolean: return f.template operator()<bool>();
  }
  detail::fail(op, ": unsupported dtype");
}

template <class F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: return f.template operator()<bf16>();
    case DType::f16: return f.template operator()<f16>();
    default: detail::fail(op, ": expected a floating-point tensor, got ", dtype_name(dt));
  }
}

// Below this many elements a kernel stays on one thread: waking the team costs more.
inline constexpr int64_t kParallelGrain = 32768;
// Pieces per thread in a region: with several, the threads that are running take over the
// pieces of one the OS has descheduled (threads.h).
inline constexpr int64_t kPiecesPerThread = 4;

// Parallel for over [0, n); body(begin, end) for disjoint ranges covering it, each at least
// `grain` items long (but the last): a small n runs on the calling thread alone, and an op uses
// only as many threads as it has grains of work. Where a range starts must not change a result.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& body) {
  if (n <= 0) return;
  FlushDenormalScope flush;  // core/denormals.h
  grain = std::max<int64_t>(grain, 1);
  int64_t grains = n / grain;
  int64_t threads = grains > 1 ? std::min<int64_t>(threads_here(), grains) : 1;
  if (threads == 1) {
    body(int64_t(0), n);
    return;
  }
  int64_t pieces = std::min(grains, threads * kPiecesPerThread);
  using Body = std::remove_reference_t<F>;
  run_parallel(n, (n + pieces - 1) / pieces, int(threads),
               [](void* b, int64_t begin, int64_t end) {
                 FlushDenormalScope flush;  // a pool thread's piece
                 (*static_cast<Body*>(b))(begin, end);
               },
               const_cast<void*>(static_cast<const void*>(&body)));
}

// Iterates `shape` for N operands with element strides; row(offsets, len, inner_strides) gets the
// element offset of each operand at the start of a run of `len` elements along the innermost
// (collapsed) dim. Adjacent dims that are contiguous for every operand are merged first, so a
// contiguous tensor is one long row, split across threads.
template <size_t N, class Row>
void for_each_row(const Shape& shape_in, const std::array<Shape, N>& strides_in, Row&& row) {
  Shape shape;
  std::array<Shape, N> st;
  for (size_t d = 0; d < shape_in.size(); ++d) {
    if (shape_in[d] == 1) continue;
    bool merge = !shape.empty();
    for (size_t k = 0; k < N && merge; ++k)
      merge = st[k].back() == strides_in[k][d] * shape_in[d];
    if (merge) {
      shape.back() *= shape_in[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides_in[k][d];
    } else {
      shape.push_back(shape_in[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides_in[k][d]);
    }
  }
  if (shape.empty()) {  // a single element
    shape.push_back(1);
    for (size_t k = 0; k < N; ++k) st[k].push_back(0);
  }
  int64_t nd = int64_t(shape.size()), inner = shape.back();
  int64_t rows = numel_of(shape) / std::max<int64_t>(inner, 1);
  if (numel_of(shape) == 0) return;
  // Long rows are cut into blocks so one contiguous row still spreads over the threads.
  int64_t block = std::min<int64_t>(inner, kParallelGrain);
  int64_t blocks_per_row = (inner + block - 1) / block;
  std::array<int64_t, N> inner_st;
  for (size_t k = 0; k < N; ++k) inner_st[k] = st[k].back();
  parallel_for(rows * blocks_per_row, std::max<int64_t>(1, kParallelGrain / block),
               [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      int64_t r = u / blocks_per_row, start = (u % blocks_per_row) * block;
      std::array<int64_t, N> off{};
      for (int64_t d = nd - 2, rem = r; d >= 0; --d) {
        int64_t idx = rem % shape[d];
        rem /= shape[d];
        for (size_t k = 0; k < N; ++k) off[k] += idx * st[k][d];
      }
      for (size_t k = 0; k < N; ++k) off[k] += start * inner_st[k];
      row(off, std::min(block, inner - start), inner_st);
    }
  });
}

// ---- Streaming stores for outputs too large to stay cached ----

// A store to a line not in cache first reads that line (write-allocate): for c = a + b that is
// a fourth memory stream on top of the three the op needs. An output at least as large as the
// last-level cache cannot stay cached for the next op anyway, so such outputs are written with
// cache-bypassing stores of whole lines, as glibc's memcpy does past its own threshold.
inline size_t stream_threshold() {
  static const size_t bytes = [] {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return l3 > 0 ? size_t(l3) : size_t(32) << 20;
  }();
  return bytes;
}

// out[i] = f(i) for i in [0, n), out contiguous. With `stream`, tiles of the row are computed
// into an L1-resident buffer (the loop that calls f still vectorizes) and then streamed out.
// out may alias f's inputs element for element (in-place ops): a tile is read before written.
template <class O, class F>
void store_row(O* out, int64_t n, bool stream, F&& f) {
#if defined(__SSE2__)
  constexpr int64_t kTile = 2048 / int64_t(sizeof(O));
  if (stream && n >= 2 * kTile) {
    auto addr = reinterpret_cast<uintptr_t>(out);
    int64_t i = 0, head = int64_t((64 - addr % 64) % 64 / sizeof(O));
    if (addr % sizeof(O)) head = n;  // misaligned elements: plain stores throughout
    for (; i < head && i < n; ++i) out[i] = f(i);
    alignas(64) O buf[kTile];
    for (; i + kTile <= n; i += kTile) {
      for (int64_t k = 0; k < kTile; ++k) buf[k] = f(i + k);
      const __m128i* src = reinterpret_cast<const __m128i*>(buf);
      __m128i* dst = reinterpret_cast<__m128i*>(out + i);
      for (size_t k = 0; k < sizeof(buf) / 16; ++k)
        _mm_stream_si128(dst + k, _mm_load_si128(src + k));
    }
    for (; i < n; ++i) out[i] = f(i);
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the join
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = f(i);
}

// ---- Row helpers for the normalising kernels (softmax, layer_norm, cross_entropy) ----

// What a row's sums accumulate in: f64 for f32 (free next to the loads, and it keeps long rows
// exact to f32 output precision), f32 for the half types (as the GPU kernels do).
template <class T>
using float_acc_t =
    std::conditional_t<std::is_same_v<T, float> || std::is_same_v<T, double>, double, float>;

// Independent accumulators for a sum along contiguous memory: without -ffast-math the compiler
// may not reorder one running sum, but it vectorizes kRowLanes of them.
inline constexpr int kRowLanes = 8;

// Four f32 lanes (one SSE register, the baseline x86-64 width) in GCC/Clang vector
// extensions: selects in them are branch-free by construction. Plain loops with a select
// feeding arithmetic are not vectorized under the default -ftrapping-math, and a scalar libm
// expf per element is what makes softmax slow.
using f32x4 = float __attribute__((vector_size(16)));
using u32x4 = uint32_t __attribute__((vector_size(16)));

// Cephes' expf: x = n ln2 + r, a degree-6 polynomial for e^r on [-ln2/2, ln2/2], times 2^n
// built in the exponent bits (n read from the bits of x log2e + 1.5 * 2^23, so no float-to-int
// conversion). Within 1 ulp for x in [-87, 88.37]. Below -87 the answer is 0 (the true value
// is below 1.7e-38), so a -inf logit gets exactly 0; above 88.37 it is +inf; NaN stays NaN.
inline f32x4 exp_approx(f32x4 x) {
  const f32x4 lo = f32x4{} - 87.0f, hi = f32x4{} + 88.9f, zero = {};
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  f32x4 xc = x > lo ? x : lo;       // also maps NaN to a finite value
  xc = xc < hi ? xc : hi;
  f32x4 t = xc * 1.44269504088896341f + magic;
  f32x4 fn = t - magic;
  f32x4 r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  f32x4 p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  u32x4 n = (u32x4)t - 0x4B400000u;  // the bits of magic
  f32x4 e = p * (f32x4)((n + 127u) << 23);
  e = x < lo ? zero : e;
  return x == x ? e : x;
}

// e[i] = exp(x[i] - shift) over a row; e may be x.
inline void exp_shifted(const float* x, float shift, float* e, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    f32x4 v;
    std::memcpy(&v, x + i, sizeof v);
    v = exp_approx(v - shift);
    std::memcpy(e + i, &v, sizeof v);
  }
  if (i < n) {
    f32x4 v = {};
    std::memcpy(&v, x + i, size_t(n - i) * sizeof(float));
    v = exp_approx(v - shift);
    std::memcpy(e + i, &v, size_t(n - i) * sizeof(float));
  }
}
// f64 is the gradient-checking dtype: exact libm, not speed.
inline void exp_shifted(const double* x, double shift, double* e, int64_t n) {
  for (int64_t i = 0; i < n; ++i) e[i] = std::exp(x[i] - shift);
}
// The same for any float dtype: half rows are widened into e first.
template <class T>
void exp_row(const T* x, acc_t<T> shift, acc_t<T>* e, int64_t n) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    exp_shifted(x, shift, e, n);
  } else {
    for (int64_t i = 0; i < n; ++i) e[i] = acc_t<T>(x[i]);
    exp_shifted(e, shift, e, n);
  }
}

// Largest element of a row in acc_t<T>; NaN is skipped here and poisons the row downstream.
template <class T>
acc_t<T> row_max(const T* x, int64_t n) {
  using A = acc_t<T>;
  A m = -std::numeric_limits<A>::infinity();
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    f32x4 lane = f32x4{} + m;
    for (; i + 4 <= n; i += 4) {
      f32x4 v;
      std::memcpy(&v, x + i, sizeof v);
      lane = v > lane ? v : lane;
    }
    for (int l = 0; l < 4; ++l) m = lane[l] > m ? lane[l] : m;
  }
  for (; i < n; ++i) m = A(x[i]) > m ? A(x[i]) : m;
  return m;
}

// Sum over i of f(A(x[i])) (default: the values), accumulated in S, lanes merged in fixed order.
template <class S, class T, class F>
S row_sum(const T* x, int64_t n, F f) {
  using A = acc_t<T>;
  S lane[kRowLanes] = {};
  int64_t i = 0;
  for (; i + kRowLanes <= n; i += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) lane[l] += S(f(A(x[i + l])));
  for (; i < n; ++i) lane[0] += S(f(A(x[i])));
  S s = 0;
  for (int l = 0; l < kRowLanes; ++l) s += lane[l];
  return s;
}
template <class S, class T>
S row_sum(const T* x, int64_t n) {
  return row_sum<S>(x, n, [](acc_t<T> v) { return v; });
}

// Sum over i of x[i] * y[i], products in acc_t<T>, accumulated in S.
template <class S, class T>
S row_dot(const T* x, const T* y, int64_t n) {
  using A = acc_t<T>;
  S lane[kRowLanes] = {};
  int64_t i = 0;
  for (; i + kRowLanes <= n; i += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) lane[l] += S(A(x[i + l]) * A(y[i + l]));
  for (; i < n; ++i) lane[0] += S(A(x[i]) * A(y[i]));
  S s = 0;
  for (int l = 0; l < kRowLanes; ++l) s += lane[l];
  return s;
}

}  // namespace fathom::cpu
