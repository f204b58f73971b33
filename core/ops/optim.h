#pragma once
// Fused optimizer steps: one pass over every element of every parameter, reading the gradient
// once and writing the parameter (and its f32 master copy) once. Shared by optim/ on CPU and
// CUDA; the multi-tensor form lets CUDA cover all parameters in one launch.
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom {

// One parameter's tensors. param and grad: any float dtype, same shape. master: f32 copy of a
// half-precision param (then the update is computed on master and rounded into param), or
// undefined. State tensors are f32, contiguous, param's shape; unused ones undefined.
struct ParamSlot {
  Tensor param, grad, master, exp_avg, exp_avg_sq;
};

struct AdamHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = true;   // AdamW (decay the weights) vs Adam (L2 added to the gradient)
  int64_t step = 1;        // 1-based, for bias correction
  double grad_scale = 1.0; // multiplies every gradient first (unscaling, clipping)
};

struct SgdHyper {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = true;  // the momentum buffer starts as the first gradient (as PyTorch)
  double grad_scale = 1.0;
};

namespace ops {
// exp_avg and exp_avg_sq are required.
void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h);
// exp_avg holds the momentum buffer; required iff momentum != 0.
void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h);
}  // namespace ops
}  // namespace fathom
