#include "fathom/nn/init.h"

#include "fathom/autograd/grad_mode.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::nn::init {

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

}  // namespace fathom::nn::init
