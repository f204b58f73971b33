#pragma once
// Losses, as torch::nn::functional::*_loss and the torch::nn::*Loss modules. Each takes
// (input, target) and an options struct with a reduction: mean (the default), sum, or none (the
// per-element losses, in the target's shape).
//
// Class scores are in the last dim, as in Fathom's cross_entropy: input [..., C] with integer
// target [...] (PyTorch puts C in dim 1 for inputs of more than two dims).
#include "fathom/autograd/ops.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

enum class Reduction { none, mean, sum };
const char* reduction_name(Reduction r);

struct MSELossOptions {
  MSELossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  FATHOM_ARG(Reduction, reduction);
};

struct L1LossOptions {
  L1LossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  FATHOM_ARG(Reduction, reduction);
};

struct BCEWithLogitsLossOptions {
  BCEWithLogitsLossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  FATHOM_ARG(Reduction, reduction);
  // The weight of positive examples, broadcast against the target (usually [C]); undefined
  // means 1. pos_weight > 1 trades precision for recall.
  FATHOM_ARG(Tensor, pos_weight);
};

struct NLLLossOptions {
  NLLLossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  FATHOM_ARG(Reduction, reduction);
  FATHOM_ARG(int64_t, ignore_index) = ops::kIgnoreIndex;  // such targets add 0 and do not count
};

struct CrossEntropyLossOptions {
  CrossEntropyLossOptions(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  FATHOM_ARG(Reduction, reduction);
  FATHOM_ARG(int64_t, ignore_index) = ops::kIgnoreIndex;
  // The target becomes (1 - s) * one_hot + s / C, as in PyTorch.
  FATHOM_ARG(double, label_smoothing) = 0.0;
};

namespace functional {

// (input - target)^2; input and target floating point of the same shape and dtype.
Tensor mse_loss(const Tensor& input, const Tensor& target, const MSELossOptions& options = {});
// |input - target|.
Tensor l1_loss(const Tensor& input, const Tensor& target, const L1LossOptions& options = {});
// -[p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed without exp overflow:
// (1 - y) x + (1 + (p - 1) y) (max(-x, 0) + log(1 + exp(-|x|))); with p = 1 that is
// max(x, 0) - x y + log(1 + exp(-|x|)). Targets are probabilities in [0, 1], same shape.
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BCEWithLogitsLossOptions& options = {});
// -input[..., target] for log-probabilities input [..., C] and integer target [...]; the mean
// divides by the number of targets not ignored (none: NaN, as in PyTorch).
Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossOptions& options = {});
// nll_loss(log_softmax(input)), with label smoothing. The plain mean goes through the fused
// cross-entropy kernel.
Tensor cross_entropy(const Tensor& input, const Tensor& target,
                     const CrossEntropyLossOptions& options);
// Mean cross-entropy of logits [N, C] or [B, T, C] against targets [N] or [B, T].
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     int64_t ignore_index = ops::kIgnoreIndex);

}  // namespace functional

// The modules hold their options and call the functional form; forward(input, target).
class MSELoss : public Module {
 public:
  explicit MSELoss(const MSELossOptions& opts = {}) : Module("MSELoss"), options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target);
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  MSELossOptions options;
};

class L1Loss : public Module {
 public:
  explicit L1Loss(const L1LossOptions& opts = {}) : Module("L1Loss"), options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target);
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  L1LossOptions options;
};

// pos_weight, when given, is registered as a buffer so that to() moves it with the module.
class BCEWithLogitsLoss : public Module {
 public:
  explicit BCEWithLogitsLoss(const BCEWithLogitsLossOptions& options = {});
  Tensor forward(const Tensor& input, const Tensor& target);
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  BCEWithLogitsLossOptions options;
};

class NLLLoss : public Module {
 public:
  explicit NLLLoss(const NLLLossOptions& opts = {}) : Module("NLLLoss"), options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target);
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  NLLLossOptions options;
};

class CrossEntropyLoss : public Module {
 public:
  explicit CrossEntropyLoss(const CrossEntropyLossOptions& opts = {})
      : Module("CrossEntropyLoss"), options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target);
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  void pretty_print(std::ostream& os) const override;
  CrossEntropyLossOptions options;
};

}  // namespace fathom::nn
