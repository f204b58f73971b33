#pragma once
// Differentiable ops, used like torch:: functions: each records a node when grad mode is on and
// an input requires grad. The view and reduction methods (x.reshape, x.sum, ...) are on Tensor
// (core/tensor.h). Forward and backward of each op sit together in autograd/ops/<family>.cpp.
//
// Comparisons (lt, eq, ...) return bool tensors with no gradient history.
#include <cstdint>
#include <optional>
#include <vector>

#include "fathom/core/ops/conv.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/nn.h"
#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom {

// ---- elementwise (autograd/ops/elementwise.cpp) ----
// Tensor-tensor forms broadcast (numpy rules); gradients are summed back to each input's shape.
Tensor add(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor add(double a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, double b);
Tensor sub(double a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, double b);
Tensor mul(double a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, double b);
Tensor div(double a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient evenly
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& x, double exponent);
// Both operands differentiable; d/d(exponent) is taken as 0 where the base is 0 and the
// exponent >= 0 (PyTorch's convention), and is NaN for a negative base.
Tensor pow(const Tensor& base, const Tensor& exponent);
Tensor pow(double base, const Tensor& exponent);

// The unary ops: one function per line of FATHOM_UNARY_OPS (core/ops/elementwise_table.h, which
// lists them and notes their conventions), named as the op: Tensor exp(const Tensor& x), gelu,
// sigmoid, ...
#define FATHOM_DECLARE(name, ...) Tensor name(const Tensor& x);
FATHOM_UNARY_OPS(FATHOM_DECLARE)
#undef FATHOM_DECLARE
// min(max(x, min), max), either bound optional (both missing is an error). The gradient is 1
// where min <= x <= max and 0 elsewhere, as PyTorch; min > max gives max everywhere.
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
Tensor clamp_min(const Tensor& x, double min);
Tensor clamp_max(const Tensor& x, double max);

Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);

// out = cond ? a : b, broadcasting all three; cond is bool and gets no gradient.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// x with `value` where mask (bool, broadcasts to x) is true; no gradient flows there.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// Zeroes each element with probability p and scales the rest by 1/(1-p) when train; the
// identity otherwise. The mask is drawn from gen (or the default generator) in f32 on x's
// device, so one seed gives one mask whatever x's dtype.
Tensor dropout(const Tensor& x, double p, bool train, Generator* gen = nullptr);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator-(double a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator/(double a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
// Ordering comparisons as operators; equality is eq()/ne() so that `a == b` keeps meaning
// nothing surprising in generic code (handle identity is Tensor::is_same).
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
inline Tensor operator<(const Tensor& a, double b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, double b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, double b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, double b) { return ge(a, b); }

// ---- reductions (autograd/ops/reduce.cpp); dims {} = all ----
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const Shape& dims = {}, bool keepdim = false);  // ties share

// ---- matmul (autograd/ops/matmul.cpp) ----
// a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast; 1-d operands as numpy.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- neural-network ops (autograd/ops/nn.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Normalises over the last dim; weight and bias [C] may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// Mean cross-entropy of logits [N, C] (or [..., C]) against integer targets [N] (or [...]).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     int64_t ignore_index = ops::kIgnoreIndex);
// weight [V, C], ids (integer, any shape) -> [..., C]; ids get no gradient.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Slices of x along dim picked by index (integer, any shape).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

// ---- convolution, pooling, batch norm (autograd/ops/conv.cpp; docs/conv.md) ----
// NCHW tensors, PyTorch's semantics and output sizes (floor mode). Pair is {h, w}.
// x [N, C, H, W], weight [O, C/groups, kH, kW], bias [O] or undefined -> [N, O, oH, oW].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair stride = {1, 1},
              Pair padding = {0, 0}, Pair dilation = {1, 1}, int64_t groups = 1);
// A stride of 0 (the default) is the kernel; padding at most half the kernel.
Tensor max_pool2d(const Tensor& x, Pair kernel, Pair stride = {0, 0}, Pair padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, Pair kernel, Pair stride = {0, 0}, Pair padding = {0, 0},
                  bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, Pair output_size);
// Batch norm over every dim of x [N, C, ...] but the channels. training: the batch's statistics,
// and running_mean/var ([C], any float dtype, may be undefined: no tracking) are updated in
// place with the unbiased variance, PyTorch's rule; eval: the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum = 0.1, double eps = 1e-5);
// Dims start_dim..end_dim merged into one (a view when the strides allow).
Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);

// ---- shape (autograd/ops/shape.cpp) ----
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);  // views

}  // namespace fathom
