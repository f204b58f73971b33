// nn::init: gains, fans, and the statistics of the kaiming and xavier initialisers.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("init: gains, fans, and the std of kaiming and xavier tensors", "[nn][init]") {
  using nn::init::Nonlinearity;
  using nn::init::FanMode;
  CHECK(nn::init::calculate_gain(Nonlinearity::linear) == 1.0);
  CHECK(nn::init::calculate_gain(Nonlinearity::sigmoid) == 1.0);
  CHECK(nn::init::calculate_gain(Nonlinearity::tanh) == Approx(5.0 / 3.0));
  CHECK(nn::init::calculate_gain(Nonlinearity::relu) == Approx(std::sqrt(2.0)));
  CHECK(nn::init::calculate_gain(Nonlinearity::leaky_relu, 0.2) == Approx(std::sqrt(2.0 / 1.04)));
  CHECK(nn::init::calculate_gain(Nonlinearity::selu) == 0.75);
  CHECK(nn::init::calculate_fan_in_and_fan_out(zeros({4, 3, 5, 5})) == std::pair<int64_t, int64_t>{75, 100});
  CHECK(nn::init::calculate_fan_in_and_fan_out(zeros({8, 2})) == std::pair<int64_t, int64_t>{2, 8});
  CHECK_THROWS_WITH(nn::init::kaiming_normal_(zeros({5})),
                    Catch::Contains("init: fan in and fan out need a tensor of at least 2 dims, got [5] f32 cpu"));

  Generator g(92);
  Tensor w = empty({512, 256});  // fan_in 256, fan_out 512
  auto near = [&](double want) {
    INFO("std " << stddev(w) << " want " << want);
    CHECK(std::fabs(stddev(w) / want - 1) < 0.02);
  };
  nn::init::kaiming_normal_(w, 0.0, FanMode::fan_in, Nonlinearity::relu, &g);
  near(std::sqrt(2.0) / 16.0);
  nn::init::kaiming_uniform_(w, 0.0, FanMode::fan_out, Nonlinearity::relu, &g);
  near(std::sqrt(2.0) / std::sqrt(512.0));
  for (double v : to_vector(w)) REQUIRE(std::fabs(v) <= std::sqrt(6.0 / 512.0));
  nn::init::kaiming_uniform_(w, std::sqrt(5.0), FanMode::fan_in, Nonlinearity::leaky_relu, &g);
  near(1.0 / std::sqrt(3.0 * 256.0));  // Linear's default: uniform in +-1/sqrt(fan_in)
  nn::init::xavier_uniform_(w, 1.0, &g);
  near(std::sqrt(2.0 / 768.0));
  nn::init::xavier_normal_(w, nn::init::calculate_gain(Nonlinearity::tanh), &g);
  near(5.0 / 3.0 * std::sqrt(2.0 / 768.0));
  Tensor sq = empty({512, 512});
  nn::init::kaiming_normal_(sq, 0.0, FanMode::fan_in, Nonlinearity::leaky_relu, &g);
  w = sq;
  near(std::sqrt(2.0 / 512.0));
  // A parameter that requires grad is written in place without recording a graph.
  nn::Linear lin(3, 4);
  Tensor before = lin.weight;
  nn::init::xavier_uniform_(lin.weight, 1.0, &g);
  CHECK(lin.weight.is_same(before));
  CHECK(lin.weight.is_leaf());
}
