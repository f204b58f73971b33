#pragma once
// Optimizers hold per-parameter state keyed by the parameter's dotted name (from
// Module::named_parameters()), so state can be saved, sharded and loaded in another process.
//
// Mixed precision: a bf16/f16 parameter gets an f32 master copy in the optimizer; the step
// runs on the master (f32 state, f32 arithmetic) and rounds into the model's parameter. The
// gradient may be the parameter's own .grad() or an f32 main-grad that the caller provides.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fathom/core/ops/optim.h"
#include "fathom/core/tensor.h"

namespace fathom::optim {

using NamedParams = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  Optimizer(NamedParams params, double lr);
  virtual ~Optimizer() = default;

  // One update from the current gradients. Parameters without a gradient are skipped (as in
  // PyTorch). grad_scale multiplies every gradient first (loss-scale inverse, clip coefficient).
  void step(double grad_scale = 1.0);
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);
  int64_t step_count() const { return step_count_; }
  const NamedParams& params() const { return params_; }

  // Replaces where gradients are read from for one parameter (an f32 main-grad buffer, a DDP
  // bucket view). An undefined tensor goes back to param.grad().
  void set_grad_source(const std::string& name, Tensor grad);

  // The gradient each parameter will be stepped with (its grad source, else .grad()); undefined
  // for parameters without one. Clipping and loss scaling read these.
  std::vector<Tensor> gradients() const;

  // State as named tensors: "<param>.<field>" (e.g. "fc1.weight.exp_avg", "fc1.weight.master",
  // "fc1.weight.step") plus the optimizer's "step". load_state_dict validates every name, shape and dtype before changing anything.
  std::map<std::string, Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& state);

 protected:
  struct State {
    Tensor master, exp_avg, exp_avg_sq;
    Tensor grad_source;
    int64_t step = 0;  // per parameter, as PyTorch: one that had no gradient did not step
  };
  // Runs the algorithm on slots whose parameters have all taken `step` steps (1-based).
  virtual void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale) = 0;
  // Creates algorithm state the first time a parameter is stepped.
  virtual void init_state(State& s, const Tensor& param) = 0;
  const char* kind_;
  double lr_;
  int64_t step_count_ = 0;
  NamedParams params_;
  std::vector<State> state_;
};

struct SGDOptions {
  double lr = 1e-2, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(NamedParams params, SGDOptions opts);

 private:
  void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale) override;
  void init_state(State& s, const Tensor& param) override;
  SGDOptions o_;
};

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
};

// Adam: weight decay as L2 added to the gradient. AdamW: decoupled decay (default 0.01).
class Adam : public Optimizer {
 public:
  Adam(NamedParams params, AdamOptions opts, bool decoupled = false);

 private:
  void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale) override;
  void init_state(State& s, const Tensor& param) override;
  AdamOptions o_;
  bool decoupled_;
};

// AdamW's own options: PyTorch's defaults, weight decay 0.01.
struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class AdamW : public Adam {
 public:
  AdamW(NamedParams params, AdamWOptions o = {})
      : Adam(std::move(params), {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true) {}
};

}  // namespace fathom::optim
