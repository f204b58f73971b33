#include "testing.h"

#include <limits>

#include "fathom/optim/clip.h"
#include "fathom/optim/grad_scaler.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("GradScaler: an inf skips the step, leaves state untouched, backs off", "[optim]") {
  Tensor w = from_vector(std::vector<double>{1.0, 2.0}, {2});
  Tensor g = zeros({2});
  optim::AdamW opt({{"w", w}}, optim::AdamWOptions(0.1));
  opt.set_grad_source("w", g);
  optim::GradScaler scaler(optim::GradScalerOptions().init_scale(1024).growth_interval(3));

  // Gradients arrive multiplied by the scale; the step must see them unscaled.
  ops::copy_(g, from_vector(std::vector<double>{0.5 * 1024, -0.25 * 1024}, {2}));
  CHECK(scaler.step(opt));
  CHECK(scaler.last_grad_norm() == Approx(std::sqrt(0.25 + 0.0625)));
  auto w1 = to_vector(w);
  auto st1 = opt.state_dict();
  // AdamW's first step moves each weight by lr * sign(g) (plus decay): unscaled correctly.
  CHECK(w1[0] == Approx(1.0 * (1 - 0.1 * 0.01) - 0.1).epsilon(1e-4));

  ops::copy_(g, from_vector(std::vector<double>{std::numeric_limits<double>::infinity(), 1}, {2}));
  CHECK_FALSE(scaler.step(opt));
  CHECK(scaler.get_scale() == 512);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(to_vector(w) == w1);
  auto st2 = opt.state_dict();
  CHECK(to_vector(st2["w.exp_avg"]) == to_vector(st1["w.exp_avg"]));
  CHECK(to_vector(st2["w.exp_avg_sq"]) == to_vector(st1["w.exp_avg_sq"]));
  CHECK(st2["w.step"].item<int64_t>() == 1);

  ops::copy_(g, from_vector(std::vector<double>{std::nan(""), 1}, {2}));
  CHECK_FALSE(scaler.step(opt));
  CHECK(scaler.get_scale() == 256);

  // Three clean steps grow the scale back by 2.
  for (int i = 0; i < 3; ++i) {
    ops::copy_(g, from_vector(std::vector<double>{256, 256}, {2}));
    CHECK(scaler.step(opt));
  }
  CHECK(scaler.get_scale() == 512);
  CHECK(scaler.clean_steps() == 0);

  auto saved = scaler.state_dict();
  optim::GradScaler other;
  other.load_state_dict(saved);
  CHECK(other.get_scale() == 512);
  CHECK(other.skipped_steps() == 2);
}

TEST_CASE("GradScaler: backoff stops at min_scale; disabled scaler still clips", "[optim]") {
  Tensor w = zeros({1}), g = full({1}, std::numeric_limits<double>::infinity());
  optim::SGD opt({{"w", w}}, optim::SGDOptions(1.0));
  opt.set_grad_source("w", g);
  optim::GradScaler s(optim::GradScalerOptions().init_scale(4).min_scale(1));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(s.step(opt));
  CHECK(s.get_scale() == 1);

  optim::GradScaler off(optim::GradScalerOptions().enabled(false));
  ops::fill_(g, 10.0);
  CHECK(off.step(opt, /*max_norm=*/2.0));
  CHECK(w.item<float>() == Approx(-2.0).epsilon(1e-5));  // clipped to norm 2, lr 1
  CHECK(off.get_scale() == 1);
  CHECK_THROWS_WITH(optim::GradScaler(optim::GradScalerOptions().backoff_factor(2)), Catch::Contains("backoff_factor"));
}

TEST_CASE("clip_grad_norm_ scales gradients to max_norm", "[optim]") {
  Tensor a = from_vector(std::vector<double>{3, 0}, {2}), b = from_vector(std::vector<double>{4}, {1});
  double n = optim::clip_grad_norm_({a, b, Tensor()}, 1.0);
  CHECK(n == Approx(5.0));
  CHECK(optim::grad_norm({a, b}) == Approx(1.0).epsilon(1e-5));
  CHECK(optim::clip_grad_norm_({a, b}, 10.0) == Approx(1.0).epsilon(1e-5));  // no-op below max
  CHECK(to_vector(a)[0] == Approx(0.6).epsilon(1e-5));
}
