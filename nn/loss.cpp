#include "fathom/nn/loss.h"

#include <ostream>

#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::nn {

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
  }
  return "?";
}

namespace {

Tensor reduce(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: return mean(loss);
  }
  detail::fail("loss: unknown reduction ", int(r));
}

// Elementwise losses compare like with like: no broadcasting, which in PyTorch mostly hides a
// [N] vs [N, 1] mistake behind a warning.
void check_pair(const char* op, const Tensor& input, const Tensor& target) {
  FATHOM_CHECK(input.defined() && target.defined(), op, ": input and target must be defined");
  FATHOM_CHECK(is_floating(input.dtype()), op, ": input ", input.desc(),
               " must be floating point");
  FATHOM_CHECK(input.shape() == target.shape() && input.dtype() == target.dtype() &&
                   input.device() == target.device(),
               op, ": input ", input.desc(), " and target ", target.desc(),
               " must have the same shape, dtype and device");
}

// Checks input [..., C] against integer target [...] and returns, on the host, the flat index
// i * C + target[i] of each counted element (0 for ignored ones) and how many are counted.
struct ClassTargets {
  Tensor index;  // [n] i64 on input's device
  Tensor valid;  // [...] bool on input's device, false where ignored
  int64_t counted = 0;
};

ClassTargets class_targets(const char* op, const Tensor& input, const Tensor& target,
                           int64_t ignore_index) {
  FATHOM_CHECK(input.defined() && target.defined(), op, ": input and target must be defined");
  FATHOM_CHECK(is_floating(input.dtype()) && input.dim() >= 1, op, ": input ", input.desc(),
               " must be floating-point scores [..., C]");
  Shape lead(input.shape().begin(), input.shape().end() - 1);
  FATHOM_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32, op, ": target ",
               target.desc(), " must hold integer class indices (i64 or i32)");
  FATHOM_CHECK(target.shape() == lead, op, ": target ", target.desc(), " must have shape ",
               shape_str(lead), " to match input ", input.desc());
  FATHOM_CHECK(input.device() == target.device(), op, ": input ", input.desc(), " and target ",
               target.desc(), " are on different devices");
  int64_t C = input.size(-1);
  std::vector<double> t = to_vector(target);
  std::vector<int64_t> index(t.size());
  std::vector<double> valid(t.size());
  ClassTargets out;
  for (size_t i = 0; i < t.size(); ++i) {
    int64_t y = int64_t(t[i]);
    if (y == ignore_index) continue;
    FATHOM_CHECK(y >= 0 && y < C, op, ": target ", y, " at flat position ", i,
                 " is out of range for ", C, " classes (input ", input.desc(),
                 "); ignore_index is ", ignore_index);
    index[i] = int64_t(i) * C + y;
    valid[i] = 1;
    ++out.counted;
  }
  out.index = from_vector(index, {int64_t(index.size())}, {DType::i64, input.device()});
  out.valid = from_vector(valid, lead, {DType::boolean, input.device()});
  return out;
}

// The per-element loss with ignored elements 0, reduced; mean divides by the counted ones.
Tensor reduce_counted(const Tensor& loss, const ClassTargets& ct, Reduction r) {
  Tensor kept = where(ct.valid, loss, zeros({}, loss.options()));
  switch (r) {
    case Reduction::none: return kept;
    case Reduction::sum: return sum(kept);
    case Reduction::mean: return sum(kept) / double(ct.counted);  // 0 counted: 0/0 = NaN
  }
  detail::fail("loss: unknown reduction ", int(r));
}

Tensor picked(const Tensor& input, const ClassTargets& ct) {
  Shape lead(input.shape().begin(), input.shape().end() - 1);
  return index_select(input.reshape({-1}), 0, ct.index).reshape(lead);
}

}  // namespace

namespace functional {

Tensor mse_loss(const Tensor& input, const Tensor& target, const MSELossOptions& options) {
  check_pair("mse_loss", input, target);
  return reduce(square(input - target), options.reduction());
}

Tensor l1_loss(const Tensor& input, const Tensor& target, const L1LossOptions& options) {
  check_pair("l1_loss", input, target);
  return reduce(abs(input - target), options.reduction());
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BCEWithLogitsLossOptions& options) {
  const char* op = "binary_cross_entropy_with_logits";
  check_pair(op, input, target);
  // |x| and max(-x, 0) are written as where() on one condition so that at x = 0 the gradient
  // is the true one, sigmoid(0) - y, rather than what abs' and relu's subgradient 0 would give.
  Tensor pos = ge(input, 0.0);
  Tensor abs_x = where(pos, input, -input);
  Tensor zero = zeros({}, input.options());
  // softplus(-x) = -log sigmoid(x); exp(-|x|) is in (0, 1], so nothing overflows.
  Tensor softplus_neg = where(pos, zero, -input) + log(1.0 + exp(-abs_x));
  Tensor loss;
  const Tensor& pw = options.pos_weight();
  if (!pw.defined()) {
    loss = (1.0 - target) * input + softplus_neg;
  } else {
    FATHOM_CHECK(pw.dtype() == input.dtype() && pw.device() == input.device() &&
                     pw.dim() <= input.dim(),
                 op, ": pos_weight ", pw.desc(), " must broadcast against input ", input.desc(),
                 " with its dtype and device");
    for (int64_t d = 1; d <= pw.dim(); ++d)
      FATHOM_CHECK(pw.size(-d) == 1 || pw.size(-d) == input.size(-d), op, ": pos_weight ",
                   pw.desc(), " does not broadcast against input ", input.desc());
    loss = (1.0 - target) * input + (1.0 + (pw - 1.0) * target) * softplus_neg;
  }
  return reduce(loss, options.reduction());
}

Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossOptions& options) {
  ClassTargets ct = class_targets("nll_loss", input, target, options.ignore_index());
  return reduce_counted(-picked(input, ct), ct, options.reduction());
}

Tensor cross_entropy(const Tensor& input, const Tensor& target,
                     const CrossEntropyLossOptions& options) {
  const char* op = "cross_entropy";
  double s = options.label_smoothing();
  FATHOM_CHECK(s >= 0.0 && s <= 1.0, op, ": label_smoothing must be in [0, 1], got ", s);
  if (s == 0.0 && options.reduction() == Reduction::mean && input.dim() >= 2)
    return fathom::cross_entropy(input, target, options.ignore_index());
  ClassTargets ct = class_targets(op, input, target, options.ignore_index());
  Tensor logp = log_softmax(input, -1);
  Tensor loss = -picked(logp, ct);
  if (s > 0.0) {
    double C = double(input.size(-1));
    loss = (1.0 - s) * loss + (s / C) * -sum(logp, {-1});
  }
  return reduce_counted(loss, ct, options.reduction());
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  return fathom::cross_entropy(logits, targets, ignore_index);
}

}  // namespace functional

Tensor MSELoss::forward(const Tensor& input, const Tensor& target) {
  return functional::mse_loss(input, target, options);
}

Tensor L1Loss::forward(const Tensor& input, const Tensor& target) {
  return functional::l1_loss(input, target, options);
}

BCEWithLogitsLoss::BCEWithLogitsLoss(const BCEWithLogitsLossOptions& opts)
    : Module("BCEWithLogitsLoss"), options(opts) {
  // The buffer handle itself, so that to() moves the weight the options use.
  if (opts.pos_weight().defined()) options.pos_weight(register_buffer("pos_weight", opts.pos_weight()));
}

Tensor BCEWithLogitsLoss::forward(const Tensor& input, const Tensor& target) {
  return functional::binary_cross_entropy_with_logits(input, target, options);
}

Tensor NLLLoss::forward(const Tensor& input, const Tensor& target) {
  return functional::nll_loss(input, target, options);
}

Tensor CrossEntropyLoss::forward(const Tensor& input, const Tensor& target) {
  return functional::cross_entropy(input, target, options);
}

void CrossEntropyLoss::pretty_print(std::ostream& os) const {
  os << "CrossEntropyLoss(reduction=" << reduction_name(options.reduction());
  if (options.ignore_index() != ops::kIgnoreIndex) os << ", ignore_index=" << options.ignore_index();
  if (options.label_smoothing() != 0.0) os << ", label_smoothing=" << options.label_smoothing();
  os << ")";
}

}  // namespace fathom::nn
