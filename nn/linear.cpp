#include "fathom/nn/linear.h"

#include <cmath>
#include <ostream>

#include "fathom/core/ops/factory.h"
#include "fathom/nn/functional.h"
#include "fathom/nn/init.h"

namespace fathom::nn {

Linear::Linear(const LinearOptions& opts, Generator* gen) : Module("Linear"), options(opts) {
  FATHOM_CHECK(opts.in_features() > 0 && opts.out_features() > 0, "Linear: in_features ",
               opts.in_features(), " and out_features ", opts.out_features(),
               " must be positive");
  double bound = 1.0 / std::sqrt(double(opts.in_features()));
  weight = register_parameter("weight", empty({opts.out_features(), opts.in_features()}));
  init::uniform_(weight, -bound, bound, gen);
  if (opts.bias()) {
    bias = register_parameter("bias", empty({opts.out_features()}));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return functional::linear(x, weight, bias); }

void Linear::pretty_print(std::ostream& os) const {
  os << "Linear(in_features=" << options.in_features() << ", out_features="
     << options.out_features() << ", bias=" << (options.bias() ? "true" : "false") << ")";
}

}  // namespace fathom::nn
