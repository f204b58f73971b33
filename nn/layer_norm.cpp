#include "fathom/nn/layer_norm.h"

#include <ostream>

#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"

namespace fathom::nn {

LayerNorm::LayerNorm(const LayerNormOptions& opts) : Module("LayerNorm"), options(opts) {
  FATHOM_CHECK(opts.normalized_shape() > 0, "LayerNorm: normalized_shape ",
               opts.normalized_shape(), " must be positive");
  if (opts.elementwise_affine()) {
    weight = register_parameter("weight", ones({opts.normalized_shape()}));
    if (opts.bias()) bias = register_parameter("bias", zeros({opts.normalized_shape()}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  FATHOM_CHECK(x.dim() >= 1 && x.size(-1) == options.normalized_shape(), "LayerNorm: input ",
               x.desc(), " must end in ", options.normalized_shape());
  return layer_norm(x, weight, bias, options.eps());
}

// PyTorch's C++ repr: LayerNorm([768], eps=1e-05, elementwise_affine=true).
void LayerNorm::pretty_print(std::ostream& os) const {
  os << "LayerNorm([" << options.normalized_shape() << "], eps=" << options.eps()
     << ", elementwise_affine=" << (options.elementwise_affine() ? "true" : "false");
  if (options.elementwise_affine() && !options.bias()) os << ", bias=false";
  os << ")";
}

}  // namespace fathom::nn
