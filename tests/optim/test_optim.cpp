#include "testing.h"

#include <cmath>

#include "fathom/optim/clip.h"
#include "fathom/optim/optimizer.h"

using namespace fathom;
using namespace fathom::testing;
using optim::NamedParams;

namespace {
// Gradients are fed through set_grad_source so these tests need no autograd graph.
struct Fixture {
  Tensor w = from_vector(std::vector<double>{1.0, -2.0, 0.5}, {3});
  Tensor g = zeros({3});
  NamedParams params() { return {{"w", w}}; }
};
}  // namespace

TEST_CASE("SGD with momentum, dampening, nesterov and weight decay: hand-computed steps", "[optim]") {
  for (bool nesterov : {false, true}) {
    Fixture f;
    optim::SGD sgd(f.params(), optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.01).nesterov(nesterov));
    sgd.set_grad_source("w", f.g);
    std::vector<double> w = {1.0, -2.0, 0.5}, buf(3);
    for (int step = 0; step < 4; ++step) {
      std::vector<double> gv = {0.3 * step - 0.2, 1.0, -0.7 + step};
      ops::copy_(f.g, from_vector(gv, {3}));
      sgd.step();
      for (int i = 0; i < 3; ++i) {
        double gi = gv[i] + 0.01 * w[i];
        buf[i] = step == 0 ? gi : 0.9 * buf[i] + gi;
        double d = nesterov ? gi + 0.9 * buf[i] : buf[i];
        w[i] -= 0.1 * d;
      }
      expect_close(f.w, w, 1e-6, 1e-7, "sgd");
    }
  }
}

TEST_CASE("Adam and AdamW: hand-computed steps with bias correction", "[optim]") {
  for (bool decoupled : {false, true}) {
    Fixture f;
    std::unique_ptr<optim::Optimizer> opt;
    if (decoupled) opt = std::make_unique<optim::AdamW>(f.params(), optim::AdamWOptions(0.01).betas({0.8, 0.9}).eps(1e-6).weight_decay(0.1));
    else opt = std::make_unique<optim::Adam>(f.params(), optim::AdamOptions(0.01).betas({0.8, 0.9}).eps(1e-6).weight_decay(0.1));
    optim::Optimizer& adam = *opt;
    adam.set_grad_source("w", f.g);
    std::vector<double> w = {1.0, -2.0, 0.5}, m(3), v(3);
    for (int t = 1; t <= 5; ++t) {
      std::vector<double> gv = {0.1 * t, -1.0, 2.0 - t};
      ops::copy_(f.g, from_vector(gv, {3}));
      adam.step(0.5);  // grad_scale halves every gradient first
      for (int i = 0; i < 3; ++i) {
        double g = 0.5 * gv[i];
        if (decoupled) w[i] *= 1 - 0.01 * 0.1;
        else g += 0.1 * w[i];
        m[i] = 0.8 * m[i] + 0.2 * g;
        v[i] = 0.9 * v[i] + 0.1 * g * g;
        double mh = m[i] / (1 - std::pow(0.8, t)), vh = v[i] / (1 - std::pow(0.9, t));
        w[i] -= 0.01 * mh / (std::sqrt(vh) + 1e-6);
      }
      expect_close(f.w, w, 1e-5, 1e-6, decoupled ? "adamw" : "adam");
    }
    CHECK(adam.step_count() == 5);
  }
}

TEST_CASE("bf16 parameters step on an f32 master copy", "[optim]") {
  Tensor w = ops::to(from_vector(std::vector<double>{1.0, 1.0}, {2}), kBFloat16);
  Tensor g = from_vector(std::vector<double>{1.0, -1.0}, {2});  // f32 main-grad
  optim::SGD sgd({{"w", w}}, optim::SGDOptions(1e-3));
  sgd.set_grad_source("w", g);
  for (int i = 0; i < 10; ++i) sgd.step();
  // 1 - 1e-3 is not representable in bf16: without a master copy every step would round back
  // to 1.0. The master accumulates the 10 steps exactly enough.
  auto st = sgd.state_dict();
  REQUIRE(st.count("w.master"));
  expect_close(st["w.master"], std::vector<double>{0.99, 1.01}, 1e-6, 1e-6, "master");
  expect_close(w, std::vector<double>{0.99, 1.01}, 4e-3, 0, "bf16 weights");
}

TEST_CASE("optimizer state round-trips through state_dict and is validated", "[optim]") {
  Fixture a, b;
  optim::AdamW opt_a(a.params(), optim::AdamWOptions(0.01));
  opt_a.set_grad_source("w", a.g);
  ops::fill_(a.g, 0.5);
  opt_a.step();
  opt_a.step();
  optim::AdamW opt_b(b.params(), optim::AdamWOptions(0.01));
  opt_b.set_grad_source("w", b.g);
  ops::copy_(b.w, a.w);
  opt_b.load_state_dict(opt_a.state_dict());
  ops::fill_(b.g, -0.25);
  ops::fill_(a.g, -0.25);
  opt_a.step();
  opt_b.step();
  CHECK(to_vector(a.w) == to_vector(b.w));
  CHECK(opt_b.step_count() == 3);

  auto bad = opt_a.state_dict();
  bad["w.exp_avg"] = zeros({4});
  CHECK_THROWS_WITH(opt_b.load_state_dict(bad), Catch::Contains("'w.exp_avg' is [4] f32"));
  auto extra = opt_a.state_dict();
  extra["v.exp_avg"] = zeros({3});
  CHECK_THROWS_WITH(opt_b.load_state_dict(extra), Catch::Contains("match no parameter"));
}

TEST_CASE("optimizer constructors name bad hyperparameters", "[optim]") {
  Fixture f;
  CHECK_THROWS_WITH(optim::Adam(f.params(), optim::AdamOptions().betas({1.0, 0.999})),
                    Catch::Contains("Adam: beta1 must be in [0, 1)"));
  CHECK_THROWS_WITH(optim::SGD(f.params(), optim::SGDOptions(-1)), Catch::Contains("SGD: lr must be"));
  CHECK_THROWS_WITH(optim::SGD(f.params(), optim::SGDOptions().nesterov(true)), Catch::Contains("SGD: nesterov"));
  CHECK_THROWS_WITH(optim::SGD(optim::NamedParams{{"a", zeros({2})}, {"a", zeros({2})}}),
                    Catch::Contains("'a' appears twice"));
  // A group's bad option names the group.
  CHECK_THROWS_WITH(optim::AdamW({optim::ParamGroup(f.params(), optim::AdamWOptions().eps(-1))}),
                    Catch::Contains("AdamW param group 0: eps must be >= 0"));
  CHECK_THROWS_WITH(optim::AdamW({optim::ParamGroup(f.params(), optim::SGDOptions())}),
                    Catch::Contains("AdamW param group 0 has SGD options"));
}
