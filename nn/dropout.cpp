#include "fathom/nn/dropout.h"

#include <ostream>

#include "fathom/autograd/ops.h"

namespace fathom::nn {

Dropout::Dropout(double p_, Generator* gen_) : Module("Dropout"), p(p_), gen(gen_) {
  FATHOM_CHECK(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), gen); }

void Dropout::pretty_print(std::ostream& os) const { os << "Dropout(p=" << p << ")"; }

}  // namespace fathom::nn
