#include "fathom/nn/sequential.h"

namespace fathom::nn {

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& m : *this) h = m->forward(h);
  return h;
}

}  // namespace fathom::nn
