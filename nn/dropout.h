#pragma once
#include "fathom/core/random.h"
#include "fathom/nn/module.h"

namespace fathom::nn {

// Zeroes elements with probability p and scales the rest by 1/(1-p) in training mode; the
// identity in eval mode. Masks come from gen (which must outlive the module) or the default
// generator.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;  // Dropout(p=0.5)

  double p;
  Generator* gen;
};

}  // namespace fathom::nn
