#include "fathom/nn/conv.h"

#include <cmath>
#include <ostream>

#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"
#include "fathom/nn/init.h"

namespace fathom::nn {

namespace {
std::ostream& operator<<(std::ostream& os, const Size2& s) {
  return os << "(" << s[0] << ", " << s[1] << ")";
}
}  // namespace

Conv2d::Conv2d(const Conv2dOptions& o, Generator* gen) : Module("Conv2d"), options(o) {
  FATHOM_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.groups() > 0 &&
                   o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
               "Conv2d: in_channels ", o.in_channels(), " and out_channels ", o.out_channels(),
               " must be positive and divisible by groups ", o.groups());
  FATHOM_CHECK(o.kernel_size()[0] > 0 && o.kernel_size()[1] > 0, "Conv2d: kernel_size (",
               o.kernel_size()[0], ", ", o.kernel_size()[1], ") must be positive");
  weight = register_parameter("weight", empty({o.out_channels(), o.in_channels() / o.groups(),
                                               o.kernel_size()[0], o.kernel_size()[1]}));
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in,
                         init::Nonlinearity::leaky_relu, gen);
  if (o.bias()) {
    double fan_in = double(o.in_channels() / o.groups() * o.kernel_size()[0] * o.kernel_size()[1]);
    double bound = 1.0 / std::sqrt(fan_in);
    bias = register_parameter("bias", empty({o.out_channels()}));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight, bias, options.stride(), options.padding(), options.dilation(),
                options.groups());
}

void Conv2d::pretty_print(std::ostream& os) const {
  const Conv2dOptions& o = options;
  os << "Conv2d(" << o.in_channels() << ", " << o.out_channels()
     << ", kernel_size=" << o.kernel_size() << ", stride=" << o.stride();
  if (o.padding()[0] || o.padding()[1]) os << ", padding=" << o.padding();
  if (o.dilation()[0] != 1 || o.dilation()[1] != 1) os << ", dilation=" << o.dilation();
  if (o.groups() != 1) os << ", groups=" << o.groups();
  if (!o.bias()) os << ", bias=false";
  os << ")";
}

}  // namespace fathom::nn
