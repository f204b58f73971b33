#pragma once
#include "fathom/nn/module.h"

namespace fathom::nn {

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override;
};

// The tanh approximation, as GPT-2 uses.
class GELU : public Module {
 public:
  GELU() : Module("GELU") {}
  Tensor forward(const Tensor& x) override;
};

}  // namespace fathom::nn
