#include "fathom/nn/activation.h"

#include "fathom/autograd/ops.h"

namespace fathom::nn {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }

}  // namespace fathom::nn
