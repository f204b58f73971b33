#include "fathom/optim/clip.h"

#include <cmath>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"
#include "fathom/optim/optimizer.h"

namespace fathom::optim {

double grad_norm(const std::vector<Tensor>& grads) { return std::sqrt(ops::sum_squares(grads)); }

double Optimizer::grad_norm() const { return optim::grad_norm(gradients()); }

double clip_coefficient(double norm, double max_norm) {
  FATHOM_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be > 0, got ", max_norm);
  if (!std::isfinite(norm)) return 1.0;
  return std::min(1.0, max_norm / (norm + 1e-6));
}

double clip_grad_norm_(const std::vector<Tensor>& grads, double max_norm) {
  double norm = grad_norm(grads);
  double c = clip_coefficient(norm, max_norm);
  if (c < 1.0)
    for (const Tensor& g : grads)
      if (g.defined()) ops::mul_(g, c);
  return norm;
}

}  // namespace fathom::optim
