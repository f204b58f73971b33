#pragma once
// In-place initialisers for parameters, as torch::nn::init. They write under NoGradGuard (an
// init is not part of any graph) and draw from gen, or the default generator, so a seed
// reproduces a model.
#include <utility>

#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom::nn::init {

enum class Nonlinearity { linear, conv1d, conv2d, conv3d, sigmoid, tanh, relu, leaky_relu, selu };
enum class FanMode { fan_in, fan_out };

// The recommended gain for a nonlinearity, as PyTorch: 1 for linear/conv/sigmoid, 5/3 for tanh,
// sqrt(2) for relu, sqrt(2 / (1 + a^2)) for leaky_relu with negative slope a (param), 3/4 for selu.
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight [out, in, k...]: in * prod(k) and out * prod(k). Fewer than two
// dims is an error: a fan is undefined for a bias.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

void normal_(const Tensor& t, double mean, double std, Generator* gen = nullptr);
void uniform_(const Tensor& t, double low, double high, Generator* gen = nullptr);
void constant_(const Tensor& t, double value);
inline void zeros_(const Tensor& t) { constant_(t, 0.0); }
inline void ones_(const Tensor& t) { constant_(t, 1.0); }

// Glorot: std = gain * sqrt(2 / (fan_in + fan_out)); uniform in +-sqrt(3) std.
void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
void xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// He: std = calculate_gain(nonlinearity, a) / sqrt(fan), fan chosen by mode; uniform in
// +-sqrt(3) std. PyTorch's defaults (leaky_relu with a = 0, i.e. gain sqrt(2)).
void kaiming_uniform_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                      Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                      Generator* gen = nullptr);
void kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                     Generator* gen = nullptr);

}  // namespace fathom::nn::init
