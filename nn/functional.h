#pragma once
// Stateless forms of the layers, as torch::nn::functional. The losses are in nn/loss.h.
#include "fathom/autograd/ops.h"
#include "fathom/nn/loss.h"

namespace fathom::nn::functional {

// x [..., in] @ weight [out, in]^T + bias [out] -> [..., out]; bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// x * sigmoid(x).
Tensor silu(const Tensor& x);

}  // namespace fathom::nn::functional
