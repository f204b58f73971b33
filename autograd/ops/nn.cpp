// Differentiable neural-network ops over the fused kernels of core/ops/nn.h.
#include "fathom/autograd/ops/common.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::saved;

// The kernels normalise over the last dim; another dim is swapped to the end and back (views).
static Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  FATHOM_CHECK(is_floating(x.dtype()), name, ": expected a floating-point tensor, got ", x.desc());
  int64_t d = x.dim() == 0 ? 0 : x.wrap_dim(dim, name);
  int64_t last = std::max<int64_t>(x.dim() - 1, 0);
  Tensor xt = ops::transpose(x, d, last);
  Tensor yt = log ? ops::log_softmax(xt) : ops::softmax(xt);
  Tensor y = ops::transpose(yt, d, last);
  if (!needs_grad({x})) return y;
  return record(name, {x}, y, [yt = saved(yt), d, last, log](const Grads& g) -> Grads {
    Tensor gt = ops::transpose(g[0], d, last);
    Tensor gx = log ? ops::log_softmax_backward(gt, yt) : ops::softmax_backward(gt, yt);
    return {ops::transpose(gx, d, last)};
  });
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  auto [y, mean, rstd] = ops::layer_norm(x, weight, bias, eps);
  if (!needs_grad({x, weight, bias})) return y;
  bool has_bias = bias.defined();
  return record("layer_norm", {x, weight, bias}, y,
                [x = saved(x), w = saved(weight), mean, rstd, has_bias](const Grads& g) -> Grads {
                  auto [gx, gw, gb] = ops::layer_norm_backward(g[0], x, w, mean, rstd, has_bias);
                  return {gx, gw, gb};
                });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  FATHOM_CHECK(logits.dim() >= 2, "cross_entropy: logits ", logits.desc(),
               " must be [N, C] or [..., C]");
  if (logits.dim() > 2) {
    // [B, T, C] against [B, T]: the same loss over the B*T rows.
    Shape lead(logits.shape().begin(), logits.shape().end() - 1);
    FATHOM_CHECK(targets.shape() == lead, "cross_entropy: targets ", targets.desc(),
                 " must have the leading shape ", shape_str(lead), " of logits ", logits.desc());
    return cross_entropy(logits.reshape({-1, logits.size(-1)}), ops::reshape(targets, {-1}),
                         ignore_index);
  }
  Tensor loss = ops::cross_entropy(logits, targets, ignore_index);
  if (!needs_grad({logits})) return loss;
  return record("cross_entropy", {logits}, loss,
                [logits = saved(logits), targets = saved(targets), ignore_index](const Grads& g) -> Grads {
                  return {ops::cross_entropy_backward(g[0], logits, targets, ignore_index)};
                });
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor y = ops::embedding(weight, ids);
  if (!needs_grad({weight})) return y;
  return record("embedding", {weight}, y,
                [ids = saved(ids), v = weight.size(0)](const Grads& g) -> Grads {
                  return {ops::embedding_backward(g[0], ids, v)};
                });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor y = ops::index_select(x, dim, index);
  if (!needs_grad({x})) return y;
  int64_t d = x.wrap_dim(dim, "index_select");
  return record("index_select", {x}, y,
                [index = saved(index), d, geo = autograd::TensorGeometry::of(x)](const Grads& g) -> Grads {
                  // Repeated indices accumulate, so the scatter is an index_add into zeros.
                  Tensor gx = zeros(geo.shape, {g[0].dtype(), geo.device});
                  ops::index_add_(gx, d, index, g[0]);
                  return {gx};
                });
}

}  // namespace fathom
