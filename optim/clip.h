#pragma once
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::optim {

// The global L2 norm of the gradients (f32 math, f64 total); undefined ones are skipped. Any
// inf or nan makes the result non-finite.
double grad_norm(const std::vector<Tensor>& grads);
// The coefficient min(1, max_norm / (norm + 1e-6)) that clipping applies; 1 for a non-finite
// norm (the caller decides what to do: a loss scaler skips the step).
double clip_coefficient(double norm, double max_norm);
// Scales the gradients in place by clip_coefficient, like PyTorch's clip_grad_norm_, and returns
// the norm before clipping. Optimizer::step(clip_coefficient(...)) does the same without the
// extra pass over the gradients.
double clip_grad_norm_(const std::vector<Tensor>& grads, double max_norm);

}  // namespace fathom::optim
