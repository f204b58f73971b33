#pragma once
// Activation modules; each prints as its name with "()" (GELU adds its approximation).
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
  void pretty_print(std::ostream& os) const override;  // GELU(approximate=tanh)
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override;
};

class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override;
};

// x * sigmoid(x) (also called swish).
class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}
  Tensor forward(const Tensor& x) override;
};

}  // namespace fathom::nn
