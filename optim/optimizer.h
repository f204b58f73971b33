#pragma once
// Optimizers hold per-parameter state keyed by the parameter's dotted name (from
// Module::named_parameters()), so state can be saved, sharded and loaded in another process.
//
// Parameter groups (as torch.optim's): each group has its own options (lr, weight decay, ...);
// a group's options override only what they set, the rest come from the optimizer's defaults.
//   optim::AdamW opt({optim::ParamGroup(decay), optim::ParamGroup(no_decay, optim::AdamWOptions().weight_decay(0))},
//                    optim::AdamWOptions(6e-4).weight_decay(0.1));
//
// Mixed precision: a bf16/f16 parameter gets an f32 master copy in the optimizer; the step
// runs on the master (f32 state, f32 arithmetic) and rounds into the model's parameter. The
// gradient may be the parameter's own .grad() or an f32 main-grad that the caller provides.
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fathom/core/ops/optim.h"
#include "fathom/core/tensor.h"
#include "fathom/optim/options.h"

namespace fathom::optim {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update from the current gradients. Parameters without a gradient are skipped (as in
  // PyTorch). grad_scale multiplies every gradient first (loss-scale inverse, clip coefficient).
  // The first step that finds a parameter which requires grad but has never had a gradient
  // warns once (stderr and unused_warning()): such a parameter is silently not trained.
  // Virtual for a sharded optimizer (parallel::DistributedOptimizer), which steps its shard and
  // then gathers the updated parameters from the other ranks.
  virtual void step(double grad_scale = 1.0);
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  const char* name() const { return kind_.c_str(); }
  // Every group's parameters, in group order.
  const NamedParams& params() const { return params_; }
  // The groups with their complete options; lr is settable (param_groups()[i].set_lr(x)), which
  // is what schedulers do. The span keeps the set of groups fixed.
  std::span<ParamGroup> param_groups() { return groups_; }
  std::span<const ParamGroup> param_groups() const { return groups_; }
  const OptimizerOptions& defaults() const { return *defaults_; }

  // Replaces where gradients are read from for one parameter (an f32 main-grad buffer, a DDP
  // bucket view). An undefined tensor goes back to param.grad().
  void set_grad_source(const std::string& name, Tensor grad);

  // The gradient each parameter will be stepped with (its grad source, else .grad()); undefined
  // for parameters without one. Clipping and loss scaling read these.
  std::vector<Tensor> gradients() const;
  // The L2 norm of all the gradients the step will use (f64 total; inf or nan when any value
  // is). A sharded optimizer's gradients() are its shard, so it sums the squares over the ranks:
  // GradScaler's clipping and inf check use this, never the norm of gradients() alone. For a
  // sharded optimizer it is collective: every rank of its group calls it.
  virtual double grad_norm() const;

  // State as named tensors: "<param>.<field>" (e.g. "fc1.weight.exp_avg", "fc1.weight.master",
  // "fc1.weight.step"), the optimizer's "step", and per group "param_groups.<i>.options" (f64,
  // OptimizerOptions::fields() order, lr first) and "param_groups.<i>.params" (a hash of its
  // parameter names). load_state_dict validates everything before changing anything: another
  // grouping or other options (lr aside, which it restores) is an error.
  // Virtual, as a sharded optimizer adds where its shard lies.
  virtual std::map<std::string, Tensor> state_dict() const;
  virtual void load_state_dict(const std::map<std::string, Tensor>& state);
  // load_state_dict's checks alone: throws what it would throw, changes nothing.
  virtual void check_state_dict(const std::map<std::string, Tensor>& state) const;

  // True when state_dict() is this rank's shard of the state, not the whole of it (so a
  // checkpoint saves it per rank; parallel::DistributedOptimizer).
  virtual bool sharded() const { return false; }
  // A sharded optimizer's state for this rank made from the states saved by `saved_world`
  // ranks (read(r), r < saved_world, returns saved rank r's state_dict()): a resume on another
  // number of ranks. An optimizer that is not sharded refuses (its state is whole on every rank).
  virtual std::map<std::string, Tensor> reshard_state_dict(
      int saved_world, const std::function<std::map<std::string, Tensor>(int)>& read) const;

  // The warning about never-stepped parameters, once given; empty before.
  const std::string& unused_warning() const { return unused_warning_; }

 protected:
  Optimizer(std::vector<ParamGroup> groups, const OptimizerOptions& defaults);
  struct State {
    Tensor master, exp_avg, exp_avg_sq;
    Tensor grad_source;
    int64_t step = 0;  // per parameter, as PyTorch: one that had no gradient did not step
  };
  // Runs the algorithm on slots of one group whose parameters have all taken `step` steps
  // (1-based); `o` is that group's options, of the optimizer's own options type.
  virtual void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale,
                      const OptimizerOptions& o) = 0;
  // Creates algorithm state the first time a parameter is stepped.
  virtual void init_state(State& s, const Tensor& param, const OptimizerOptions& o) = 0;

 private:
  void warn_unused();
  std::string kind_;
  std::unique_ptr<OptimizerOptions> defaults_;
  std::vector<ParamGroup> groups_;
  int64_t step_count_ = 0;
  NamedParams params_;        // all groups' parameters, flattened
  std::vector<size_t> group_of_;  // params_[i] belongs to groups_[group_of_[i]]
  std::vector<State> state_;
  std::string unused_warning_;
};

class SGD : public Optimizer {
 public:
  SGD(NamedParams params, const SGDOptions& defaults = SGDOptions());
  SGD(std::vector<ParamGroup> groups, const SGDOptions& defaults = SGDOptions());

 private:
  void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale,
              const OptimizerOptions& o) override;
  void init_state(State& s, const Tensor& param, const OptimizerOptions& o) override;
};

// Adam: weight decay as L2 added to the gradient.
class Adam : public Optimizer {
 public:
  Adam(NamedParams params, const AdamOptions& defaults = AdamOptions());
  Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults = AdamOptions());

 private:
  void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale,
              const OptimizerOptions& o) override;
  void init_state(State& s, const Tensor& param, const OptimizerOptions& o) override;
};

// AdamW: decoupled weight decay (the weights shrink by lr * weight_decay each step).
class AdamW : public Optimizer {
 public:
  AdamW(NamedParams params, const AdamWOptions& defaults = AdamWOptions());
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults = AdamWOptions());

 private:
  void update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale,
              const OptimizerOptions& o) override;
  void init_state(State& s, const Tensor& param, const OptimizerOptions& o) override;
};

}  // namespace fathom::optim
