#pragma once
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct BatchNorm2dOptions {
  explicit BatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}
  FATHOM_ARG(int64_t, num_features);
  FATHOM_ARG(double, eps) = 1e-5;
  FATHOM_ARG(double, momentum) = 0.1;
  FATHOM_ARG(bool, affine) = true;
  FATHOM_ARG(bool, track_running_stats) = true;
};

// Batch norm over x [N, C, H, W] (fathom::batch_norm), with PyTorch's names: parameters
// weight (1) and bias (0) [C] when affine; buffers running_mean (0), running_var (1) [C] f32
// and num_batches_tracked (i64 scalar) when track_running_stats. Training mode normalises
// with the batch's statistics and updates the running ones; eval mode uses the running ones
// (the batch's when they are not tracked). Under data parallelism each rank's statistics are
// its own batch's (docs/conv.md).
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNorm2dOptions& options);
  explicit BatchNorm2d(int64_t num_features) : BatchNorm2d(BatchNorm2dOptions(num_features)) {}
  Tensor forward(const Tensor& x) override;
  // BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)
  void pretty_print(std::ostream& os) const override;
  // Running statistics back to mean 0, variance 1, no batches (PyTorch's reset_running_stats).
  void reset_running_stats();

  BatchNorm2dOptions options;
  Tensor weight, bias;                                     // undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless tracked
};

}  // namespace fathom::nn
