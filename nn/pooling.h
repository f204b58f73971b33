#pragma once
// Pooling and flattening modules over x [N, C, H, W] (fathom::max_pool2d, ...). A stride of 0
// means the kernel, as PyTorch's stride=None.
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct MaxPool2dOptions {
  MaxPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  FATHOM_ARG(Size2, kernel_size);
  FATHOM_ARG(Size2, stride) = 0;
  FATHOM_ARG(Size2, padding) = 0;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const MaxPool2dOptions& options) : Module("MaxPool2d"), options(options) {}
  explicit MaxPool2d(Size2 kernel_size) : MaxPool2d(MaxPool2dOptions(kernel_size)) {}
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;  // MaxPool2d(kernel_size=(2, 2), ...)
  MaxPool2dOptions options;
};

struct AvgPool2dOptions {
  AvgPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  FATHOM_ARG(Size2, kernel_size);
  FATHOM_ARG(Size2, stride) = 0;
  FATHOM_ARG(Size2, padding) = 0;
  FATHOM_ARG(bool, count_include_pad) = true;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const AvgPool2dOptions& options) : Module("AvgPool2d"), options(options) {}
  explicit AvgPool2d(Size2 kernel_size) : AvgPool2d(AvgPool2dOptions(kernel_size)) {}
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;
  AvgPool2dOptions options;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size)
      : Module("AdaptiveAvgPool2d"), output_size(output_size) {}
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;  // AdaptiveAvgPool2d(output_size=(1, 1))
  Size2 output_size;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;  // Flatten(start_dim=1, end_dim=-1)
  int64_t start_dim, end_dim;
};

}  // namespace fathom::nn
