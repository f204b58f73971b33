#pragma once
// Direct f64 loops for the ops oneDNN has no f64 for (convolution, pooling, batch norm). They
// exist so the f64 finite-difference gradient checks run through the same dispatch points as
// f32 training: plain, single-threaded, written for clarity rather than speed. Same contract
// as the backend kernels (core/backend_api.inc).
#include "fathom/core/ops/conv.h"
#include "fathom/core/tensor.h"

namespace fathom::cpu::direct {

void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p,
            const Tensor& y);
void conv2d_backward_data(const Tensor& grad_y, const Tensor& weight, const ConvParams& p,
                          const Tensor& grad_x);
void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const ConvParams& p,
                            const Tensor& grad_weight, const Tensor& grad_bias);
void pool2d(const Tensor& x, const PoolParams& p, const Tensor& y);
void pool2d_backward(const Tensor& grad_y, const Tensor& x, const PoolParams& p,
                     const Tensor& grad_x);
void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& var, const Tensor& invstd);
void batch_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& invstd, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias);

}  // namespace fathom::cpu::direct
