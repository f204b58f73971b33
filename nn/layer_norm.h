#pragma once
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct LayerNormOptions {
  explicit LayerNormOptions(int64_t normalized_shape) : normalized_shape_(normalized_shape) {}
  FATHOM_ARG(int64_t, normalized_shape);  // the size of the last dim
  FATHOM_ARG(double, eps) = 1e-5;
  FATHOM_ARG(bool, elementwise_affine) = true;
  FATHOM_ARG(bool, bias) = true;
};

// Normalises over the last dim: (x - mean) / sqrt(var + eps) * weight + bias; weight 1, bias 0.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;

  LayerNormOptions options;
  Tensor weight;  // [C], undefined without elementwise_affine
  Tensor bias;    // [C], undefined without elementwise_affine or bias
};

}  // namespace fathom::nn
