#pragma once
// Convolution, pooling and batch-norm kernels over NCHW tensors, forward and backward side by
// side (docs/conv.md). Each checks its inputs, makes them contiguous, allocates the outputs and
// calls its one dispatch point: oneDNN on the CPU (f64 by direct loops, for gradient checks),
// cuDNN on CUDA. Output sizes follow PyTorch (floor mode):
//   out = (in + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
#include <array>
#include <cstdint>
#include <tuple>

#include "fathom/core/tensor.h"

namespace fathom {

using Pair = std::array<int64_t, 2>;

// The geometry of one 2-d convolution (dilation >= 1, as PyTorch counts it).
struct ConvParams {
  Pair stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
};

enum class PoolKind : uint8_t { max, avg_include_pad, avg_exclude_pad };

struct PoolParams {
  PoolKind kind = PoolKind::max;
  Pair kernel{1, 1}, stride{1, 1}, padding{0, 0};
};

}  // namespace fathom

namespace fathom::ops {

// x [N, C, H, W], weight [O, C/groups, kH, kW], bias [O] or undefined -> [N, O, oH, oW].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p);
// The gradients asked for (the others come back undefined): grad_x [N, C, H, W],
// grad_weight like weight, grad_bias [O].
std::tuple<Tensor, Tensor, Tensor> conv2d_backward(const Tensor& grad_y, const Tensor& x,
                                                   const Tensor& weight, const ConvParams& p,
                                                   bool need_x, bool need_weight,
                                                   bool need_bias);

// y [N, C, oH, oW] and what backward needs besides x and y: a backend workspace (the CPU's
// max-pool argmax in oneDNN's own form), possibly undefined. Padding must be at most half the
// kernel (PyTorch's rule). Max pooling never picks a padded position.
std::tuple<Tensor, Tensor> pool2d(const Tensor& x, const PoolParams& p);
Tensor pool2d_backward(const Tensor& grad_y, const Tensor& x, const Tensor& y,
                       const Tensor& workspace, const PoolParams& p);

// Training-mode batch norm of x [N, C, ...] over every dim but 1; weight, bias [C] or undefined.
// Returns y, and the batch statistics [C] (f32, f64 for f64 x): mean, the unbiased variance
// (what running stats take) and invstd = 1 / sqrt(biased variance + eps), saved for backward.
// Needs more than one value per channel, as PyTorch.
struct BatchNormStats {
  Tensor mean, var, invstd;
};
std::tuple<Tensor, BatchNormStats> batch_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps);
// grad_x, grad_weight (undefined when weight is), grad_bias (undefined unless has_bias), the
// parameter gradients in the statistics' dtype.
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& grad_y, const Tensor& x,
                                                       const Tensor& weight,
                                                       const BatchNormStats& stats, double eps,
                                                       bool has_bias);

}  // namespace fathom::ops
