#pragma once
// Finite-difference gradient checking, in f64.
//
// gradcheck(f, inputs) compares, for every element of every input that requires grad, the
// analytic gradient of L = sum(f(inputs) * r) (one backward pass with a fixed random r, i.e. a
// vector-Jacobian product) with the central difference (L(x+eps) - L(x-eps)) / (2 eps). A random
// projection catches a wrong Jacobian entry with probability 1 at the cost of a single backward.
//
// Inputs that require grad must be leaves, f64 and on the CPU; they are perturbed in place (any
// strides, but not overlapping: no expanded views) and restored. Their .grad is cleared. f must
// be deterministic: a random op inside it should draw from a generator it seeds itself.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::autograd {

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the worst mismatches, by input and element, when !ok
  explicit operator bool() const { return ok; }
};

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps = 1e-6,
                          double atol = 1e-5, double rtol = 1e-3, uint64_t seed = 0);

}  // namespace fathom::autograd
