#include "fathom/optim/grad_scaler.h"

#include <cmath>

#include "fathom/autograd/ops.h"
#include "fathom/optim/clip.h"

namespace fathom::optim {

GradScaler::GradScaler(const GradScalerOptions& o) : o_(o), enabled_(o.enabled()), scale_(o.init_scale()) {
  FATHOM_CHECK(o.init_scale() > 0 && std::isfinite(o.init_scale()), "GradScaler: init_scale must be a "
               "positive finite number, got ", o.init_scale());
  FATHOM_CHECK(o.growth_factor() > 1, "GradScaler: growth_factor must be > 1, got ", o.growth_factor());
  FATHOM_CHECK(o.backoff_factor() > 0 && o.backoff_factor() < 1,
               "GradScaler: backoff_factor must be in (0, 1), got ", o.backoff_factor());
  FATHOM_CHECK(o.growth_interval() > 0, "GradScaler: growth_interval must be > 0, got ", o.growth_interval());
  FATHOM_CHECK(o.min_scale() > 0 && o.min_scale() <= o.init_scale(),
               "GradScaler: min_scale must be in (0, init_scale], got ", o.min_scale());
}

Tensor GradScaler::scale(const Tensor& loss) const {
  FATHOM_CHECK(loss.defined(), "GradScaler::scale: the loss is undefined");
  return enabled_ ? loss * scale_ : loss;
}

bool GradScaler::step(Optimizer& opt, double max_norm) {
  double s = get_scale();
  double norm = opt.grad_norm() / s;  // over every rank's shard for a sharded optimizer
  last_norm_ = norm;
  if (!std::isfinite(norm)) {
    ++skipped_;
    growth_tracker_ = 0;
    if (enabled_) scale_ = std::max(o_.min_scale(), scale_ * o_.backoff_factor());
    return false;
  }
  double coef = max_norm > 0 ? clip_coefficient(norm, max_norm) : 1.0;
  opt.step(coef / s);
  if (enabled_ && ++growth_tracker_ >= o_.growth_interval()) {
    // Growing past f32's range would turn every scaled loss into inf.
    scale_ = std::min(scale_ * o_.growth_factor(), 1e30);
    growth_tracker_ = 0;
  }
  return true;
}

std::map<std::string, double> GradScaler::state_dict() const {
  return {{"scale", scale_}, {"growth_tracker", double(growth_tracker_)}, {"skipped", double(skipped_)}};
}

void GradScaler::check_state_dict(const std::map<std::string, double>& s) const {
  for (const char* k : {"scale", "growth_tracker", "skipped"})
    FATHOM_CHECK(s.count(k), "GradScaler: state lacks '", k, "'");
  FATHOM_CHECK(s.size() == 3, "GradScaler: state has ", s.size() - 3, " entries besides scale, "
               "growth_tracker and skipped");
  FATHOM_CHECK(s.at("scale") > 0 && std::isfinite(s.at("scale")), "GradScaler: saved scale ",
               s.at("scale"), " is not a positive finite number");
  for (const char* k : {"growth_tracker", "skipped"})
    FATHOM_CHECK(s.at(k) >= 0 && s.at(k) == std::floor(s.at(k)), "GradScaler: saved ", k, " ",
                 s.at(k), " is not a count");
}

void GradScaler::load_state_dict(const std::map<std::string, double>& s) {
  check_state_dict(s);
  scale_ = s.at("scale");
  growth_tracker_ = int64_t(s.at("growth_tracker"));
  skipped_ = int64_t(s.at("skipped"));
}

}  // namespace fathom::optim
