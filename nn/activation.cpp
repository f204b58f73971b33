#include "fathom/nn/activation.h"

#include <ostream>

#include "fathom/nn/functional.h"

namespace fathom::nn {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }
void GELU::pretty_print(std::ostream& os) const { os << "GELU(approximate=tanh)"; }
Tensor Tanh::forward(const Tensor& x) { return fathom::tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }
Tensor SiLU::forward(const Tensor& x) { return functional::silu(x); }

}  // namespace fathom::nn
