#pragma once
// Helpers for DeepComm's tests. Every rank runs the same test cases in the same order, so the
// collectives inside them line up. Values are small integers: sums over up to 4 ranks are exact
// in every dtype (bf16 and u8 included), so results are compared exactly.
//
// The shared Catch2 main (tests/main.cpp) knows nothing about MPI: the first world() call
// initializes DeepComm and an atexit hook finalizes it after the tests.
#include <algorithm>
#include <string>
#include <vector>

#include "fathom/comm/comm.h"
#include "testing.h"

namespace fathom::testing {

inline comm::ProcessGroup& world() { return comm::world(); }

inline const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> d = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                       DType::i32, DType::i64, DType::u8,   DType::boolean};
  return d;
}

// Sizes: empty, one element, odd, and several MB (f32: 4 MB).
inline const std::vector<int64_t>& test_sizes() {
  static const std::vector<int64_t> s = {0, 1, 7, (int64_t(1) << 20) + 3};
  return s;
}

// This rank's input for element i, exact in every dtype.
inline double value(int64_t i, int rank, DType t) {
  if (t == DType::boolean) return double((i + rank) % 3 == 0);
  return double(i % 7 + rank);
}

inline Tensor rank_tensor(int64_t n, int rank, DType t) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(i, rank, t);
  return from_vector(v, {n}, t);
}

inline constexpr comm::ReduceOp kOps[] = {comm::ReduceOp::sum, comm::ReduceOp::avg,
                                          comm::ReduceOp::max, comm::ReduceOp::min};

// What allreduce(op) must give for element i, from the inputs value(i, r, t) of every rank.
inline double reduced(int64_t i, int n, DType t, comm::ReduceOp op) {
  double acc = value(i, 0, t);
  for (int r = 1; r < n; ++r) {
    double v = value(i, r, t);
    if (t == DType::boolean) {
      acc = op == comm::ReduceOp::min ? double(acc && v) : double(acc || v);
      continue;
    }
    switch (op) {
      case comm::ReduceOp::sum: case comm::ReduceOp::avg: acc += v; break;
      case comm::ReduceOp::max: acc = std::max(acc, v); break;
      case comm::ReduceOp::min: acc = std::min(acc, v); break;
    }
  }
  return op == comm::ReduceOp::avg ? acc / n : acc;
}

// "allreduce f32 n=7": names a case in failure messages.
inline std::string label(const char* op, DType t, int64_t n) {
  return std::string(op) + " " + dtype_name(t) + " n=" + std::to_string(n);
}

// Exact comparison, reporting the first few mismatches.
inline void expect_equal(const Tensor& got, const std::vector<double>& want,
                         const std::string& what) {
  std::vector<double> g = to_vector(got);
  REQUIRE(g.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] != want[i] && bad++ < 3)
      UNSCOPED_INFO(what << ": element " << i << " is " << g[i] << ", want " << want[i]);
  CHECK(bad == 0);
}

}  // namespace fathom::testing
