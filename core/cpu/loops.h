#pragma once
// Building blocks of the CPU kernels: dtype dispatch and a strided N-d loop that hands each
// thread contiguous-ish rows, so the innermost loop is a plain, vectorizable for-loop.
#include <omp.h>

#include <algorithm>
#include <array>

#include "core/tensor.h"

namespace fathom::cpu {

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

// Parallel for over [0, n) in chunks; body(begin, end).
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& body) {
  if (n <= grain || omp_get_max_threads() == 1) {
    if (n > 0) body(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) body(b, e);
  }
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

}  // namespace fathom::cpu
