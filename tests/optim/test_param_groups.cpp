// Parameter groups, the never-stepped-parameter warning, and GradScaler::scale(loss).
#include "testing.h"

#include <cstdio>
#include <unistd.h>

#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

Tensor vec(std::vector<double> v) {
  int64_t n = int64_t(v.size());
  return from_vector(v, {n});
}

// A gradient that depends on the weights and the step, so a wrong update shows up later too.
void fill_grad(const Tensor& g, const Tensor& w, int t) {
  std::vector<double> wv = to_vector(w), gv;
  for (size_t i = 0; i < wv.size(); ++i) gv.push_back(std::sin(3 * wv[i]) + 0.1 * double(t) - 0.05 * double(i));
  ops::copy_(g, from_vector(gv, g.shape()));
}

// Runs `f` with stderr sent to a file and returns what it wrote.
template <class F>
std::string capture_stderr(F f) {
  std::fflush(stderr);
  FILE* tmp = std::tmpfile();
  int saved = dup(2);
  dup2(fileno(tmp), 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  std::rewind(tmp);
  for (int c; (c = std::fgetc(tmp)) != EOF;) out.push_back(char(c));
  std::fclose(tmp);
  return out;
}

}  // namespace

TEST_CASE("two param groups with their own lr and weight decay step exactly as separate optimizers", "[optim]") {
  auto defaults = optim::AdamWOptions(0.01).weight_decay(0.1).betas({0.8, 0.99});
  std::vector<double> a0 = {1.0, -2.0, 0.5}, b0 = {0.3, 0.7}, c0 = {-1.5};
  Tensor a = vec(a0), b = vec(b0), c = vec(c0), ga = zeros({3}), gb = zeros({2}), gc = zeros({1});
  // b's group sets only weight decay (lr and betas from the defaults); c's sets only lr.
  optim::AdamW grouped({optim::ParamGroup({{"a", a}}),
                        optim::ParamGroup({{"b", b}}, optim::AdamWOptions().weight_decay(0)),
                        optim::ParamGroup({{"c", c}}, optim::AdamWOptions(0.003))},
                       defaults);
  REQUIRE(grouped.param_groups().size() == 3);
  const auto& bo = dynamic_cast<const optim::AdamWOptions&>(grouped.param_groups()[1].options());
  CHECK(bo.lr() == 0.01);
  CHECK(std::get<0>(bo.betas()) == 0.8);
  CHECK(bo.weight_decay() == 0);
  const auto& co = dynamic_cast<const optim::AdamWOptions&>(grouped.param_groups()[2].options());
  CHECK(co.lr() == 0.003);
  CHECK(co.weight_decay() == 0.1);

  Tensor a2 = vec(a0), b2 = vec(b0), c2 = vec(c0);
  optim::AdamW sep_a({{"a", a2}}, defaults);
  optim::AdamW sep_b({{"b", b2}}, optim::AdamWOptions(0.01).weight_decay(0).betas({0.8, 0.99}));
  optim::AdamW sep_c({{"c", c2}}, optim::AdamWOptions(0.003).weight_decay(0.1).betas({0.8, 0.99}));
  grouped.set_grad_source("a", ga);
  grouped.set_grad_source("b", gb);
  grouped.set_grad_source("c", gc);
  sep_a.set_grad_source("a", ga);
  sep_b.set_grad_source("b", gb);
  sep_c.set_grad_source("c", gc);
  for (int t = 0; t < 6; ++t) {
    if (t == 3) {  // a settable lr, as a scheduler changes it
      grouped.param_groups()[1].set_lr(0.02);
      sep_b.param_groups()[0].set_lr(0.02);
    }
    fill_grad(ga, a, t), fill_grad(gb, b, t), fill_grad(gc, c, t);
    grouped.step();
    fill_grad(ga, a2, t), fill_grad(gb, b2, t), fill_grad(gc, c2, t);
    sep_a.step(), sep_b.step(), sep_c.step();
    REQUIRE(to_vector(a) == to_vector(a2));
    REQUIRE(to_vector(b) == to_vector(b2));
    REQUIRE(to_vector(c) == to_vector(c2));
  }
  CHECK(to_vector(a) != a0);
  CHECK(grouped.params().size() == 3);
  CHECK_THROWS_WITH(grouped.param_groups()[0].set_lr(-1), Catch::Contains("AdamW param group: lr must be"));
}

TEST_CASE("param groups: a name in two groups is an error; state must match the grouping", "[optim]") {
  Tensor x = zeros({2}), y = zeros({2}), z = zeros({1});
  CHECK_THROWS_WITH(optim::SGD({optim::ParamGroup({{"x", x}, {"a", y}}), optim::ParamGroup({{"a", z}})}),
                    Catch::Contains("SGD: parameter 'a' appears twice (in param group 0 and param group 1)"));

  optim::SGD two({optim::ParamGroup({{"x", x}}), optim::ParamGroup({{"y", y}}, optim::SGDOptions().momentum(0.9))},
                 optim::SGDOptions(0.1));
  auto st = two.state_dict();
  CHECK(to_vector(st["param_groups.1.options"]) == std::vector<double>{0.1, 0.9, 0, 0, 0});
  // Other options in a group (momentum here) would change what the state means.
  optim::SGD other({optim::ParamGroup({{"x", x}}), optim::ParamGroup({{"y", y}})}, optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(other.load_state_dict(st), Catch::Contains("param group 1 option momentum is 0.9 in the state but 0"));
  // The same parameters grouped differently.
  optim::SGD regrouped({optim::ParamGroup({{"x", x}, {"y", y}}), optim::ParamGroup(optim::NamedParams{})},
                       optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(regrouped.load_state_dict(st), Catch::Contains("param group 0 of the state holds other parameters"));
  optim::SGD one({{"x", x}, {"y", y}}, optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(one.load_state_dict(st), Catch::Contains("SGD: the state has more param groups than this optimizer's 1"));
  // The lr is restored, not compared: a scheduler or the user changes it while training.
  two.param_groups()[0].set_lr(0.5);
  optim::SGD same({optim::ParamGroup({{"x", x}}), optim::ParamGroup({{"y", y}}, optim::SGDOptions().momentum(0.9))},
                  optim::SGDOptions(0.1));
  same.load_state_dict(two.state_dict());
  CHECK(same.param_groups()[0].lr() == 0.5);
}

TEST_CASE("a parameter that never gets a gradient is warned about once, by name", "[optim]") {
  Tensor used = vec({1.0, 2.0}).requires_grad_(), unused = vec({3.0}).requires_grad_();
  Tensor frozen = vec({4.0});  // requires_grad false: meant to stay fixed, no warning
  optim::SGD opt({{"used", used}, {"head.bias", unused}, {"frozen", frozen}}, optim::SGDOptions(0.1));
  std::string err = capture_stderr([&] {
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad();
      sum(used * used).backward();
      opt.step();
    }
  });
  CHECK(opt.unused_warning().find("SGD: 1 of 3 parameters have received no gradient") != std::string::npos);
  CHECK(opt.unused_warning().find("'head.bias'") != std::string::npos);
  CHECK(opt.unused_warning().find("'frozen'") == std::string::npos);
  CHECK(opt.unused_warning().find("ddp.attach") != std::string::npos);
  CHECK(opt.unused_warning().find("requires_grad_(false)") != std::string::npos);
  // Printed once for the three steps.
  size_t first = err.find("head.bias");
  REQUIRE(first != std::string::npos);
  CHECK(err.find("head.bias", first + 1) == std::string::npos);

  Tensor p = vec({1.0}).requires_grad_(), q = vec({2.0}).requires_grad_();
  optim::SGD all({{"p", p}, {"q", q}}, optim::SGDOptions(0.1));
  std::string quiet = capture_stderr([&] {
    sum(p * q).backward();
    all.step();
  });
  CHECK(all.unused_warning().empty());
  CHECK(quiet.empty());

  // More than five are counted, not all listed.
  optim::NamedParams many;
  for (int i = 0; i < 8; ++i) many.push_back({"w" + std::to_string(i), vec({1.0}).requires_grad_()});
  optim::SGD lots(many);
  capture_stderr([&] { lots.step(); });
  CHECK(lots.unused_warning().find("8 of 8") != std::string::npos);
  CHECK(lots.unused_warning().find("'w4' and 3 more") != std::string::npos);
}

TEST_CASE("GradScaler::scale(loss) gives gradients times the scale; disabled it is the loss", "[optim]") {
  auto grads = [](const optim::GradScaler& s) {
    Tensor w = vec({0.5, -1.5, 2.0}).requires_grad_();
    Tensor loss = sum(w * w * 3.0);
    s.scale(loss).backward();
    return to_vector(w.grad());
  };
  optim::GradScaler off(optim::GradScalerOptions().enabled(false));
  optim::GradScaler on(optim::GradScalerOptions().init_scale(1024));
  std::vector<double> plain = grads(off), scaled = grads(on);
  CHECK(plain == std::vector<double>{3.0, -9.0, 12.0});
  for (size_t i = 0; i < plain.size(); ++i) CHECK(scaled[i] == plain[i] * 1024);
  Tensor loss = vec({2.0});
  CHECK(off.scale(loss).is_same(loss));
  CHECK(on.scale(loss).item<double>() == 2048);
  CHECK(on.get_scale() == 1024);
}
