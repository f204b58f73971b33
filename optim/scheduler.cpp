#include "fathom/optim/scheduler.h"

#include <algorithm>
#include <cmath>

#include "fathom/core/error.h"

namespace fathom::optim {

LRScheduler::LRScheduler(Optimizer& opt, const char* kind) : kind_(kind), opt_(opt) {
  for (const ParamGroup& g : opt.param_groups()) base_lrs_.push_back(g.lr());
}

double LRScheduler::reference_lr() const {
  double lr = opt_.defaults().get_lr();
  FATHOM_CHECK(lr > 0, kind_, ": the optimizer's default lr must be > 0 (groups scale this "
               "scheduler's absolute lrs by their lr over it), got ", lr);
  return lr;
}

void LRScheduler::apply() {
  double f = factor(step_);
  auto groups = opt_.param_groups();
  FATHOM_CHECK(groups.size() == base_lrs_.size(), kind_, ": the optimizer has ", groups.size(),
               " param groups, the scheduler ", base_lrs_.size());
  last_lr_.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].set_lr(base_lrs_[g] * f);
    last_lr_.push_back(groups[g].lr());
  }
}

void LRScheduler::step() {
  ++step_;
  apply();
}

std::map<std::string, double> LRScheduler::state_dict() const {
  std::map<std::string, double> s{{"step", double(step_)}};
  for (size_t g = 0; g < base_lrs_.size(); ++g) s["base_lr." + std::to_string(g)] = base_lrs_[g];
  return s;
}

void LRScheduler::check_state_dict(const std::map<std::string, double>& s) const {
  FATHOM_CHECK(s.count("step") && s.at("step") >= 0, kind_, ": state lacks a 'step' >= 0");
  FATHOM_CHECK(s.size() == base_lrs_.size() + 1, kind_, ": state has ", s.size() - 1,
               " entries besides 'step', expected base_lr.<group> for ", base_lrs_.size(), " param groups");
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    auto it = s.find("base_lr." + std::to_string(g));
    FATHOM_CHECK(it != s.end() && it->second >= 0, kind_, ": state lacks 'base_lr.", g, "' >= 0");
  }
  factor(int64_t(s.at("step")));  // throws for a step this scheduler cannot reach
}

void LRScheduler::load_state_dict(const std::map<std::string, double>& s) {
  check_state_dict(s);
  for (size_t g = 0; g < base_lrs_.size(); ++g) base_lrs_[g] = s.at("base_lr." + std::to_string(g));
  step_ = int64_t(s.at("step"));
  apply();
}

ConstantLR::ConstantLR(Optimizer& opt, int64_t warmup_steps) : LRScheduler(opt, "ConstantLR"), warmup_(warmup_steps) {
  FATHOM_CHECK(warmup_steps >= 0, kind_, ": warmup_steps must be >= 0, got ", warmup_steps);
  start();
}

double ConstantLR::factor(int64_t step) const {
  return step < warmup_ ? double(step + 1) / double(warmup_) : 1.0;
}

CosineLR::CosineLR(Optimizer& opt, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : LRScheduler(opt, "CosineLR"), warmup_(warmup_steps), total_(total_steps) {
  FATHOM_CHECK(warmup_steps >= 0, kind_, ": warmup_steps must be >= 0, got ", warmup_steps);
  FATHOM_CHECK(total_steps > warmup_steps, kind_, ": total_steps (", total_steps,
               ") must be > warmup_steps (", warmup_steps, ")");
  FATHOM_CHECK(min_lr >= 0, kind_, ": min_lr must be >= 0, got ", min_lr);
  min_ratio_ = min_lr == 0 ? 0.0 : min_lr / reference_lr();
  start();
}

double CosineLR::factor(int64_t step) const {
  if (step < warmup_) return double(step + 1) / double(warmup_);
  double t = double(std::min(step, total_) - warmup_) / double(total_ - warmup_);
  return min_ratio_ + 0.5 * (1.0 - min_ratio_) * (1.0 + std::cos(M_PI * t));
}

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : LRScheduler(opt, "StepLR"), step_size_(step_size), gamma_(gamma) {
  FATHOM_CHECK(step_size > 0, kind_, ": step_size must be > 0, got ", step_size);
  FATHOM_CHECK(gamma > 0, kind_, ": gamma must be > 0, got ", gamma);
  start();
}

double StepLR::factor(int64_t step) const { return std::pow(gamma_, double(step / step_size_)); }

OneCycleLR::OneCycleLR(Optimizer& opt, double max_lr, int64_t total_steps, double pct_start,
                       double div_factor, double final_div_factor)
    : LRScheduler(opt, "OneCycleLR"), max_lr_(max_lr), total_(total_steps) {
  FATHOM_CHECK(max_lr > 0, kind_, ": max_lr must be > 0, got ", max_lr);
  FATHOM_CHECK(pct_start > 0 && pct_start < 1, kind_, ": pct_start must be in (0, 1), got ", pct_start);
  FATHOM_CHECK(div_factor > 0, kind_, ": div_factor must be > 0, got ", div_factor);
  FATHOM_CHECK(final_div_factor > 0, kind_, ": final_div_factor must be > 0, got ", final_div_factor);
  end_up_ = pct_start * double(total_steps) - 1;
  end_down_ = double(total_steps) - 1;
  // PyTorch would divide by zero here; a phase needs at least one step to anneal over.
  FATHOM_CHECK(end_up_ > 0 && end_down_ > end_up_, kind_, ": pct_start * total_steps - 1 (", end_up_,
               ") must be > 0 and < total_steps - 1 (", end_down_, "); raise total_steps");
  initial_lr_ = max_lr / div_factor;
  min_lr_ = initial_lr_ / final_div_factor;
  reference_ = reference_lr();
  start();
}

double OneCycleLR::factor(int64_t step) const {
  FATHOM_CHECK(step >= 0 && step <= total_, kind_, ": step ", step, " is past total_steps ", total_);
  // PyTorch's _annealing_cos: from `start` at pct 0 to `end` at pct 1.
  auto cos_anneal = [](double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(M_PI * pct) + 1);
  };
  double s = double(step);
  double lr = s <= end_up_ ? cos_anneal(initial_lr_, max_lr_, s / end_up_)
                           : cos_anneal(max_lr_, min_lr_, (s - end_up_) / (end_down_ - end_up_));
  return lr / reference_;
}

}  // namespace fathom::optim
