#include "fathom/optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "fathom/core/error.h"

namespace fathom::optim {

double LRSchedule::at(int64_t step) const {
  FATHOM_CHECK(step >= 0, "LRSchedule: step must be >= 0, got ", step);
  if (step < warmup_steps) return max_lr * double(step + 1) / double(warmup_steps);
  if (kind == Kind::constant) return max_lr;
  FATHOM_CHECK(total_steps > warmup_steps, "LRSchedule: cosine needs total_steps (", total_steps,
               ") > warmup_steps (", warmup_steps, ")");
  double t = double(std::min(step, total_steps) - warmup_steps) / double(total_steps - warmup_steps);
  return min_lr + 0.5 * (max_lr - min_lr) * (1 + std::cos(M_PI * t));
}

}  // namespace fathom::optim
