#pragma once
// Learning-rate schedules as pure functions of the step, so resuming needs only the step.
#include <cstdint>

namespace fathom::optim {

struct LRSchedule {
  enum class Kind { constant, cosine } kind = Kind::constant;
  double max_lr = 1e-3;
  double min_lr = 0.0;        // cosine decays to this
  int64_t warmup_steps = 0;   // linear from max_lr/warmup to max_lr
  int64_t total_steps = 0;    // cosine reaches min_lr here; required for cosine

  static LRSchedule constant(double lr, int64_t warmup = 0) {
    return {Kind::constant, lr, lr, warmup, 0};
  }
  static LRSchedule cosine(double max_lr, int64_t total, int64_t warmup = 0, double min_lr = 0) {
    return {Kind::cosine, max_lr, min_lr, warmup, total};
  }
  // LR for 0-based step (the step about to be taken).
  double at(int64_t step) const;
};

}  // namespace fathom::optim
