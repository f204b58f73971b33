// LR schedulers against their formulas, and an exact resume of optimizer + scheduler.
#include "testing.h"

#include <cmath>

#include "fathom/optim/optimizer.h"
#include "fathom/optim/scheduler.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// The lr the scheduler has set for each 0-based step 0..n-1, driven as in training.
std::vector<double> lrs(optim::Optimizer& opt, optim::LRScheduler& s, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    if (i) s.step();
    CHECK(s.last_lr()[0] == opt.param_groups()[0].lr());
    out.push_back(opt.param_groups()[0].lr());
  }
  return out;
}

optim::SGD sgd(double lr, double group1_lr = 0) {
  optim::NamedParams a{{"a", zeros({1})}}, b{{"b", zeros({1})}};
  if (group1_lr == 0) return optim::SGD(a, optim::SGDOptions(lr));
  return optim::SGD({optim::ParamGroup(a), optim::ParamGroup(b, optim::SGDOptions(group1_lr))}, optim::SGDOptions(lr));
}

}  // namespace

TEST_CASE("ConstantLR: linear warmup, then the base lr", "[optim]") {
  optim::SGD opt({{"a", zeros({1})}}, optim::SGDOptions(0.5));
  optim::ConstantLR s(opt, 4);
  auto v = lrs(opt, s, 6);
  CHECK(v == std::vector<double>{0.125, 0.25, 0.375, 0.5, 0.5, 0.5});
  optim::ConstantLR none(opt);
  CHECK(opt.param_groups()[0].lr() == 0.5);
}

TEST_CASE("CosineLR: warmup then cosine to min_lr, group ratios kept", "[optim]") {
  optim::NamedParams a{{"a", zeros({1})}}, b{{"b", zeros({1})}};
  optim::SGD opt({optim::ParamGroup(a), optim::ParamGroup(b, optim::SGDOptions(0.5))}, optim::SGDOptions(1.0));
  optim::CosineLR s(opt, /*warmup_steps=*/10, /*total_steps=*/110, /*min_lr=*/0.1);
  auto v = lrs(opt, s, 201);
  CHECK(v[0] == Approx(0.1));  // (0 + 1) / 10
  CHECK(v[4] == Approx(0.5));
  CHECK(v[9] == Approx(1.0));
  CHECK(v[10] == Approx(1.0));
  // step 35: t = 25/100, min + (max - min) * (1 + cos(pi/4)) / 2 = 0.1 + 0.9 * 0.853553...
  CHECK(v[35] == Approx(0.8681980515339464).epsilon(1e-12));
  CHECK(v[60] == Approx(0.55));
  CHECK(v[110] == Approx(0.1));
  CHECK(v[200] == Approx(0.1));
  // The half-lr group follows at half, min_lr included.
  optim::SGD opt2({optim::ParamGroup(a), optim::ParamGroup(b, optim::SGDOptions(0.5))}, optim::SGDOptions(1.0));
  optim::CosineLR s2(opt2, 10, 110, 0.1);
  for (int i = 0; i < 60; ++i) s2.step();
  CHECK(s2.last_lr()[1] == Approx(0.275));
  CHECK(s2.base_lrs() == std::vector<double>{1.0, 0.5});
  CHECK_THROWS_WITH(optim::CosineLR(opt2, 10, 10), Catch::Contains("CosineLR: total_steps (10) must be > warmup_steps (10)"));
}

TEST_CASE("StepLR: gamma every step_size steps", "[optim]") {
  auto opt = sgd(1.0);
  optim::StepLR s(opt, 3, 0.5);
  CHECK(lrs(opt, s, 8) == std::vector<double>{1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25});
  CHECK_THROWS_WITH(optim::StepLR(opt, 0), Catch::Contains("StepLR: step_size must be > 0"));
}

TEST_CASE("OneCycleLR: PyTorch's two-phase cosine, by hand", "[optim]") {
  // max_lr 1, 100 steps, pct_start 0.3, div 25, final_div 1e4: initial 0.04, min 4e-6,
  // phase ends at steps 29 (0.3 * 100 - 1) and 99; lr = end + (start - end) / 2 * (cos(pi pct) + 1).
  auto opt = sgd(0.123);  // the optimizer's lr is replaced, as in PyTorch
  optim::OneCycleLR s(opt, 1.0, 100);
  auto v = lrs(opt, s, 101);
  CHECK(v[0] == Approx(0.04).epsilon(1e-12));
  // step 10: pct 10/29, cos = 0.468008..., 1 + (0.04 - 1) / 2 * 1.468008 = 0.295164
  CHECK(v[10] == Approx(0.29516394846410077).epsilon(1e-12));
  CHECK(v[29] == Approx(1.0).epsilon(1e-12));
  CHECK(v[30] == Approx(0.9994965352845243).epsilon(1e-12));
  CHECK(v[64] == Approx(0.500002).epsilon(1e-12));  // pct 0.5: halfway between 1 and 4e-6
  CHECK(v[99] == Approx(4e-6).epsilon(1e-9));
  CHECK(v[100] == Approx(0.0005074647154757324).epsilon(1e-9));  // PyTorch allows total_steps itself
  CHECK_THROWS_WITH(s.step(), Catch::Contains("OneCycleLR: step 101 is past total_steps 100"));
  // A second group at twice the default lr keeps twice the lr.
  auto two = sgd(0.1, 0.2);
  optim::OneCycleLR s2(two, 1.0, 100);
  CHECK(s2.last_lr()[0] == Approx(0.04));
  CHECK(s2.last_lr()[1] == Approx(0.08));
  CHECK_THROWS_WITH(optim::OneCycleLR(two, 1.0, 3), Catch::Contains("OneCycleLR: pct_start * total_steps - 1"));
}

namespace {

// Two groups (decay, no decay), AdamW, warmup + cosine, one bf16 parameter (master weights).
struct Run {
  Tensor w = from_vector(std::vector<double>{1.0, -2.0, 0.5, 0.25}, {2, 2});
  Tensor b = ops::to(from_vector(std::vector<double>{0.1, -0.3}, {2}), kBFloat16);
  Tensor gw = zeros({2, 2}), gb = zeros({2});
  std::unique_ptr<optim::AdamW> opt;
  std::unique_ptr<optim::CosineLR> sched;
  Run() {
    opt = std::make_unique<optim::AdamW>(
        std::vector<optim::ParamGroup>{optim::ParamGroup({{"w", w}}),
                                       optim::ParamGroup({{"b", b}}, optim::AdamWOptions().weight_decay(0))},
        optim::AdamWOptions(0.05).weight_decay(0.1));
    opt->set_grad_source("w", gw);
    opt->set_grad_source("b", gb);
    sched = std::make_unique<optim::CosineLR>(*opt, 3, 10, 0.005);
  }
  void train(int from, int to) {
    for (int t = from; t < to; ++t) {
      std::vector<double> wv = to_vector(w), bv = to_vector(b), g;
      for (double x : wv) g.push_back(std::cos(x) + 0.2 * t);
      ops::copy_(gw, from_vector(g, {2, 2}));
      ops::copy_(gb, from_vector(std::vector<double>{bv[0] - 0.1 * t, bv[1] * bv[1]}, {2}));
      opt->step();
      sched->step();
    }
  }
};

}  // namespace

TEST_CASE("optimizer + scheduler state round trip resumes bit-exactly", "[optim]") {
  Run straight;
  straight.train(0, 10);

  Run first;
  first.train(0, 5);
  auto opt_state = first.opt->state_dict();
  auto sched_state = first.sched->state_dict();
  Run resumed;  // fresh objects: step-0 lrs, no optimizer state
  ops::copy_(resumed.w, first.w);
  ops::copy_(resumed.b, first.b);
  resumed.opt->load_state_dict(opt_state);
  resumed.sched->load_state_dict(sched_state);
  CHECK(resumed.sched->last_step() == 5);
  CHECK(resumed.sched->last_lr() == first.sched->last_lr());
  resumed.train(5, 10);

  CHECK(to_vector(resumed.w) == to_vector(straight.w));
  CHECK(to_vector(resumed.b) == to_vector(straight.b));
  CHECK(resumed.sched->last_lr() == straight.sched->last_lr());
  auto a = straight.opt->state_dict(), r = resumed.opt->state_dict();
  REQUIRE(a.size() == r.size());
  for (const auto& [k, v] : a) CHECK(to_vector(r.at(k)) == to_vector(v));

  auto bad = sched_state;
  bad["base_lr.2"] = 1.0;
  CHECK_THROWS_WITH(resumed.sched->load_state_dict(bad), Catch::Contains("CosineLR: state has 3 entries"));
}
