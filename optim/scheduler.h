#pragma once
// Learning-rate schedulers that step themselves, as PyTorch's: construction sets step 0's lr,
// then `opt.step(); sched.step();` once per training step.
//
// Each scheduler is a pure function of the step count (factor(step)), multiplying every param
// group's base lr (its lr when the scheduler was built), so groups keep their ratios and
// resuming needs only the step. Absolute lrs a scheduler takes (CosineLR's min_lr, OneCycleLR's
// max_lr) are for the optimizer's default lr; a group with another base lr scales them by
// base / default. With one group (or groups at the default lr) they are exactly PyTorch's.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fathom/optim/optimizer.h"

namespace fathom::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  // Advances to the next step and sets every group's lr for it.
  void step();
  // Steps taken: the lr set now is factor(last_step()).
  int64_t last_step() const { return step_; }
  // Each group's lr as this scheduler last set it.
  const std::vector<double>& last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // The multiplier of the base lrs at `step` (0-based: the step about to be taken).
  virtual double factor(int64_t step) const = 0;

  // "step" and "base_lr.<group>": all a resume needs. load_state_dict checks the group count
  // and sets the lrs for the restored step.
  std::map<std::string, double> state_dict() const;
  void load_state_dict(const std::map<std::string, double>& s);
  // load_state_dict's checks alone: throws what it would throw, changes nothing.
  void check_state_dict(const std::map<std::string, double>& s) const;

 protected:
  LRScheduler(Optimizer& opt, const char* kind);
  // Sets step 0's lrs; each scheduler's constructor calls it last (factor is virtual).
  void start() { apply(); }
  // The optimizer's default lr, for schedulers given absolute lrs; refuses 0.
  double reference_lr() const;
  const char* kind_;

 private:
  void apply();
  Optimizer& opt_;
  int64_t step_ = 0;
  std::vector<double> base_lrs_, last_lr_;
};

// The base lr throughout, after an optional linear warmup from base/warmup_steps.
class ConstantLR : public LRScheduler {
 public:
  explicit ConstantLR(Optimizer& opt, int64_t warmup_steps = 0);
  double factor(int64_t step) const override;

 private:
  int64_t warmup_;
};

// GPT-2/nanoGPT/llm.c: linear warmup to the base lr over warmup_steps (step s gets
// base * (s+1) / warmup_steps), then half a cosine down to min_lr at total_steps, min_lr after.
class CosineLR : public LRScheduler {
 public:
  CosineLR(Optimizer& opt, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  double factor(int64_t step) const override;

 private:
  int64_t warmup_, total_;
  double min_ratio_;
};

// base * gamma^(step / step_size), as torch.optim.lr_scheduler.StepLR.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);
  double factor(int64_t step) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// torch.optim.lr_scheduler.OneCycleLR with its defaults (two phases, cosine annealing): from
// max_lr/div_factor up to max_lr over the first pct_start of total_steps, then down to
// max_lr/div_factor/final_div_factor at step total_steps - 1. Stepping past total_steps throws.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& opt, double max_lr, int64_t total_steps, double pct_start = 0.3,
             double div_factor = 25.0, double final_div_factor = 1e4);
  double factor(int64_t step) const override;

 private:
  double max_lr_, initial_lr_, min_lr_, reference_;
  double end_up_, end_down_;  // the phases' last steps, PyTorch's float(pct_start * total) - 1
  int64_t total_;
};

}  // namespace fathom::optim
