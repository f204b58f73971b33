#include "fathom/nn/init.h"

#include <cmath>

#include "fathom/autograd/grad_mode.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::nn::init {

double calculate_gain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::conv1d:
    case Nonlinearity::conv2d:
    case Nonlinearity::conv3d:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::selu: return 3.0 / 4.0;  // keeps the forward variance (PyTorch's choice)
  }
  detail::fail("init::calculate_gain: unknown nonlinearity ", int(nonlinearity));
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  FATHOM_CHECK(t.defined() && t.dim() >= 2, "init: fan in and fan out need a tensor of at least "
               "2 dims, got ", t.defined() ? t.desc() : std::string("undefined"));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

void normal_(const Tensor& t, double mean, double std, Generator* gen) {
  NoGradGuard no_grad;
  ops::copy_(t, normal(t.shape(), mean, std, t.options(), gen));
}

void uniform_(const Tensor& t, double low, double high, Generator* gen) {
  NoGradGuard no_grad;
  ops::copy_(t, uniform(t.shape(), low, high, t.options(), gen));
}

void constant_(const Tensor& t, double value) {
  NoGradGuard no_grad;
  ops::fill_(t, value);
}

namespace {
double xavier_std(const Tensor& t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return gain * std::sqrt(2.0 / double(fan_in + fan_out));
}

double kaiming_std(const Tensor& t, double a, FanMode mode, Nonlinearity nonlinearity) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  int64_t fan = mode == FanMode::fan_in ? fan_in : fan_out;
  FATHOM_CHECK(fan > 0, "init::kaiming: tensor ", t.desc(), " has a zero fan");
  return calculate_gain(nonlinearity, a) / std::sqrt(double(fan));
}
}  // namespace

// A uniform in [-b, b] has std b / sqrt(3).
void xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  double b = std::sqrt(3.0) * xavier_std(t, gain);
  uniform_(t, -b, b, gen);
}

void xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  normal_(t, 0.0, xavier_std(t, gain), gen);
}

void kaiming_uniform_(const Tensor& t, double a, FanMode mode, Nonlinearity nonlinearity,
                      Generator* gen) {
  double b = std::sqrt(3.0) * kaiming_std(t, a, mode, nonlinearity);
  uniform_(t, -b, b, gen);
}

void kaiming_normal_(const Tensor& t, double a, FanMode mode, Nonlinearity nonlinearity,
                     Generator* gen) {
  normal_(t, 0.0, kaiming_std(t, a, mode, nonlinearity), gen);
}

}  // namespace fathom::nn::init
