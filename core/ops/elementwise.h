#pragma once
// Elementwise ops with numpy broadcasting, any strides. Arithmetic promotes dtypes
// (core/dtype.h: promote); comparisons return bool. Half types compute in f32.
#include <limits>
#include <optional>
#include <type_traits>

#include "fathom/core/tensor.h"

namespace fathom {

// sign is float-only like the rest and maps NaN to 0 ((x > 0) - (x < 0), PyTorch's formula);
// its gradient is zero everywhere.
enum class UnaryOp : uint8_t {
  neg, exp, log, tanh, relu, gelu, sigmoid, sqrt, rsqrt, abs, square,
  sin, cos, log1p, expm1, sign
};
inline constexpr int kNumUnaryOps = int(UnaryOp::sign) + 1;
enum class BinaryOp : uint8_t { add, sub, mul, div, maximum, minimum, pow, eq, ne, lt, le, gt, ge };
const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

namespace detail {
// A clamp bound in a kernel's compute type A: integer types saturate to their range, so an
// infinite bound (no bound) or one past the range never overflows the conversion.
template <class A>
A clamp_bound(double b) {
  if constexpr (std::is_integral_v<A>) {
    if (b <= double(std::numeric_limits<A>::lowest())) return std::numeric_limits<A>::lowest();
    if (b >= double(std::numeric_limits<A>::max())) return std::numeric_limits<A>::max();
  }
  return A(b);
}
}  // namespace detail

namespace ops {

Tensor unary(UnaryOp op, const Tensor& x);
// dL/dx of y = op(x) given dL/dy; x and y as the forward saw them (which one each op reads:
// unary_backward_reads_x).
Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y);

// True when op's derivative is computed from x, false when from y (exp, tanh, sigmoid, ... reuse
// the output); sign and neg read neither. Autograd saves only the one it needs.
bool unary_backward_reads_x(UnaryOp op);

// min(max(x, lo), hi) with either bound optional (PyTorch's clamp: lo > hi gives hi everywhere,
// NaN stays NaN). Any non-bool dtype; integer tensors need integral bounds.
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);
// grad_y where lo <= x <= hi, 0 elsewhere (NaN x gets 0), as PyTorch; float dtypes.
Tensor clamp_backward(const Tensor& grad_y, const Tensor& x, std::optional<double> lo,
                      std::optional<double> hi);

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor binary(BinaryOp op, const Tensor& a, double b);  // a op b, scalar on the right
Tensor binary(BinaryOp op, double a, const Tensor& b);  // a op b, scalar on the left
// out <- a op b, in place when out is a (out must already have the broadcast shape).
void binary_out(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void binary_out(BinaryOp op, const Tensor& a, double b, const Tensor& out);

// out <- a + alpha * b, in place (a broadcasts b), used by gradient accumulation.
void add_(const Tensor& a, const Tensor& b, double alpha = 1.0);
void mul_(const Tensor& a, double s);

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

}  // namespace ops
}  // namespace fathom
