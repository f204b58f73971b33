#pragma once
// Dynamic loss scaling for f16 training (defaults as in PyTorch's GradScaler and Megatron):
// multiply the loss by the scale (scaler.scale(loss)) before backward so small gradients survive f16; before the
// step, check the gradients: any inf/nan skips the step (parameters and optimizer state
// untouched) and halves the scale; after growth_interval clean steps the scale doubles.
// Unscaling and clipping are folded into the optimizer's fused step (one pass), after one
// pass that computes the gradient norm (Optimizer::grad_norm: over every rank's shard for a
// sharded optimizer, so an inf anywhere skips the step on every rank). bf16 needs no scaling: construct with enabled(false) and
// step() still clips and still refuses non-finite gradients.
#include <map>
#include <string>

#include "fathom/core/options.h"
#include "fathom/optim/optimizer.h"

namespace fathom::optim {

class GradScalerOptions {
 public:
  FATHOM_ARG(bool, enabled) = true;
  FATHOM_ARG(double, init_scale) = 65536.0;  // 2^16
  FATHOM_ARG(double, growth_factor) = 2.0;
  FATHOM_ARG(double, backoff_factor) = 0.5;
  FATHOM_ARG(int64_t, growth_interval) = 2000;
  FATHOM_ARG(double, min_scale) = 1.0;
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& o = GradScalerOptions());

  // The loss times the current scale, differentiable: call backward() on it. The same tensor
  // when disabled, so bf16/f32 runs record no extra op.
  Tensor scale(const Tensor& loss) const;
  // The current scale (1 when disabled), as PyTorch's get_scale().
  double get_scale() const { return enabled_ ? scale_ : 1.0; }
  bool is_enabled() const { return enabled_; }
  // Unscales, checks, clips (max_norm > 0) and steps; returns false when the step was skipped.
  // The unscaled gradient norm of the last call is in last_grad_norm().
  bool step(Optimizer& opt, double max_norm = 0.0);

  double last_grad_norm() const { return last_norm_; }
  int64_t skipped_steps() const { return skipped_; }
  int64_t clean_steps() const { return growth_tracker_; }

  // scale, growth tracker and skipped count: what a checkpoint must save.
  std::map<std::string, double> state_dict() const;
  void load_state_dict(const std::map<std::string, double>& s);
  // load_state_dict's checks alone: throws what it would throw, changes nothing.
  void check_state_dict(const std::map<std::string, double>& s) const;

 private:
  GradScalerOptions o_;
  bool enabled_;
  double scale_;
  int64_t growth_tracker_ = 0, skipped_ = 0;
  double last_norm_ = 0;
};

}  // namespace fathom::optim
