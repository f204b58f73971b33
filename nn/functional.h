#pragma once
// Stateless forms of the layers, as torch::nn::functional.
#include "fathom/autograd/ops.h"

namespace fathom::nn::functional {

// x [..., in] @ weight [out, in]^T + bias [out] -> [..., out]; bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// x * sigmoid(x).
Tensor silu(const Tensor& x);
// Mean cross-entropy of logits [N, C] or [B, T, C] against targets [N] or [B, T].
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     int64_t ignore_index = ops::kIgnoreIndex);

}  // namespace fathom::nn::functional
