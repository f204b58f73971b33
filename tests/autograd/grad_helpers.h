#pragma once
// Helpers for the gradient tests: random f64 leaves in contiguous or strided layouts, and a
// gradcheck wrapper that prints the mismatches.
#include "testing.h"

namespace fathom::testing {

// An f64 leaf of `shape` with values in [lo, hi); strided (non-contiguous) when nc.
inline Tensor leaf(const Shape& shape, Generator& g, bool nc = false, double lo = -1,
                   double hi = 1) {
  Tensor t = uniform(shape, lo, hi, kFloat64, &g);
  if (nc) t = noncontiguous(t);
  t.requires_grad_();
  return t;
}

// A random shape of rank 0..max_rank with dims in [1, max_dim].
inline Shape random_shape(Generator& g, int max_rank = 3, int max_dim = 4) {
  std::vector<double> u = to_vector(rand({max_rank + 1}, kFloat64, &g));
  Shape s(size_t(u[0] * (max_rank + 1)));
  for (size_t i = 0; i < s.size(); ++i) s[i] = 1 + int64_t(u[i + 1] * max_dim);
  return s;
}

// A shape that broadcasts to `s`: leading dims dropped and some dims set to 1.
inline Shape broadcastable(const Shape& s, Generator& g) {
  std::vector<double> u = to_vector(rand({int64_t(s.size()) + 1}, kFloat64, &g));
  size_t drop = size_t(u[0] * double(s.size() + 1)) % (s.size() + 1);
  Shape b(s.begin() + drop, s.end());
  for (size_t i = 0; i < b.size(); ++i)
    if (u[i + 1] < 0.4) b[i] = 1;
  return b;
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

inline void check_grad(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs,
                       double atol = 1e-6, double rtol = 1e-5) {
  auto r = autograd::gradcheck(f, inputs, 1e-6, atol, rtol);
  INFO(what << "\n" << r.message);
  CHECK(r.ok);
}

}  // namespace fathom::testing
