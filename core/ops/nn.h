#pragma once
// Neural-network kernels, forward and backward side by side. All normalise over the last dim.
#include <tuple>

#include "fathom/core/tensor.h"

namespace fathom::ops {

Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim
Tensor softmax_backward(const Tensor& grad_y, const Tensor& y);
Tensor log_softmax_backward(const Tensor& grad_y, const Tensor& y);

// y = (x - mean) * rstd * weight + bias over the last dim; weight/bias [C] may be undefined.
// Returns y, mean [rows], rstd [rows] (saved for backward): f32, or f64 when x is f64.
std::tuple<Tensor, Tensor, Tensor> layer_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps);
// Returns grad_x, grad_weight, grad_bias (the latter two undefined when weight/bias are).
std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& grad_y, const Tensor& x,
                                                       const Tensor& weight, const Tensor& mean,
                                                       const Tensor& rstd, bool has_bias);

// Mean cross-entropy of logits [N, C] against integer targets [N] (i64 or i32); targets equal
// to ignore_index count for nothing. Returns a scalar f32 loss (f64 for f64 logits, so
// gradient checks in f64 work); NaN when every target is ignored, as in PyTorch.
inline constexpr int64_t kIgnoreIndex = -100;
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     int64_t ignore_index = kIgnoreIndex);
// grad_logits for a scalar grad_loss (the mean over non-ignored targets is undone here).
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits,
                              const Tensor& targets, int64_t ignore_index = kIgnoreIndex);

// Rows of x along dim picked by index (any integer shape): out.shape = x.shape with dim replaced
// by index.shape. Out-of-range indices throw.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x.index_add_(dim, index, src): x[..., index[i], ...] += src[..., i, ...]; repeats accumulate.
void index_add_(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// weight [V, C], ids [...] -> [..., C]
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor embedding_backward(const Tensor& grad_y, const Tensor& ids, int64_t num_embeddings);

}  // namespace fathom::ops
