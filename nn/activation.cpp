#include "nn/activation.h"

#include "autograd/ops.h"

namespace fathom::nn {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }

}  // namespace fathom::nn
