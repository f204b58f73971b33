#pragma once
// Shared test helpers: random inputs in awkward layouts, a naive f64 reference, and
// dtype-aware comparison.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <fathom.h>

namespace fathom::testing {

// Relative tolerance for a dtype: what rounding in that dtype can explain.
inline double tol(DType t) {
  switch (t) {
    case DType::f64: return 1e-10;
    case DType::f32: return 1e-5;
    case DType::bf16: return 2e-2;
    case DType::f16: return 2e-3;
    default: return 0;
  }
}

// Checks every element: |got - want| <= atol + rtol * |want|. Reports the first few misses.
inline void expect_close(const Tensor& got, const std::vector<double>& want, double rtol,
                         double atol, const std::string& what = "") {
  std::vector<double> g = to_vector(got);
  REQUIRE(g.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool same_nan = std::isnan(g[i]) && std::isnan(want[i]);
    bool same_inf = std::isinf(g[i]) && g[i] == want[i];
    if (same_nan || same_inf) continue;
    if (!(std::fabs(g[i] - want[i]) <= atol + rtol * std::fabs(want[i]))) {
      if (bad++ < 5)
        UNSCOPED_INFO(what << " element " << i << ": got " << g[i] << ", want " << want[i]);
    }
  }
  CHECK(bad == 0);
}

inline void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol,
                         const std::string& what = "") {
  REQUIRE(got.shape() == want.shape());
  expect_close(got, to_vector(want), rtol, atol, what);
}

// The same values as `x`, but laid out as a non-contiguous view (transposed storage).
inline Tensor noncontiguous(const Tensor& x) {
  // Every other element of a buffer twice as long: non-contiguous whenever numel > 1.
  Tensor big = zeros({std::max<int64_t>(2 * x.numel(), 1)}, x.options());
  Shape st = contiguous_strides(x.shape());
  for (auto& v : st) v *= 2;
  Tensor v = ops::as_strided(big, x.shape(), st, 0);
  ops::copy_(v, x);
  if (x.numel() > 1) REQUIRE(!v.is_contiguous());
  return v;
}

// Population standard deviation of every element (init statistics).
inline double stddev(const Tensor& t) {
  std::vector<double> v = to_vector(t);
  double m = 0, s = 0;
  for (double x : v) m += x / double(v.size());
  for (double x : v) s += (x - m) * (x - m) / double(v.size());
  return std::sqrt(s);
}

// Row-major index helpers for naive references.
inline std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = s[d] ? i % s[d] : 0;
    i = s[d] ? i / s[d] : 0;
  }
  return idx;
}

// Index into a row-major buffer of shape `s` for a broadcast index of the output shape.
inline int64_t broadcast_index(const std::vector<int64_t>& out_idx, const Shape& s) {
  int64_t flat = 0, lead = int64_t(out_idx.size()) - int64_t(s.size());
  for (size_t d = 0; d < s.size(); ++d) flat = flat * s[d] + (s[d] == 1 ? 0 : out_idx[lead + d]);
  return flat;
}

inline bool has_cuda() {
  if (cuda_available()) return true;
  WARN("SKIPPED: no CUDA device in this build or on this machine; [cuda] test not run");
  return false;
}

}  // namespace fathom::testing
