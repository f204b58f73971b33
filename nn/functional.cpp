#include "fathom/nn/functional.h"

namespace fathom::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  FATHOM_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input ", x.desc(), " does not match weight ", weight.desc(),
               " (expected [..., ", weight.dim() == 2 ? weight.size(1) : -1, "])");
  Tensor y = fathom::matmul(x, weight.t());
  return bias.defined() ? y + bias : y;
}

Tensor silu(const Tensor& x) { return x * sigmoid(x); }

}  // namespace fathom::nn::functional
