#pragma once
#include "fathom/core/random.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, Size2 kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  FATHOM_ARG(int64_t, in_channels);
  FATHOM_ARG(int64_t, out_channels);
  FATHOM_ARG(Size2, kernel_size);
  FATHOM_ARG(Size2, stride) = 1;
  FATHOM_ARG(Size2, padding) = 0;
  FATHOM_ARG(Size2, dilation) = 1;
  FATHOM_ARG(int64_t, groups) = 1;
  FATHOM_ARG(bool, bias) = true;
};

// 2-d convolution of x [N, C, H, W] (fathom::conv2d). weight [out, in/groups, kH, kW], bias
// [out]; initialised as PyTorch: kaiming_uniform with a = sqrt(5) (uniform in
// +-1/sqrt(fan_in)) and the bias uniform in +-1/sqrt(fan_in), fan_in = in/groups * kH * kW.
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  // Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), as PyTorch prints it.
  void pretty_print(std::ostream& os) const override;

  Conv2dOptions options;
  Tensor weight;
  Tensor bias;  // undefined when options.bias() is false
};

}  // namespace fathom::nn
