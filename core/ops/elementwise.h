#pragma once
// Elementwise ops with numpy broadcasting, any strides. Arithmetic promotes dtypes
// (core/dtype.h: promote); comparisons return bool. Half types compute in f32.
#include "fathom/core/tensor.h"

namespace fathom {

enum class UnaryOp : uint8_t { neg, exp, log, tanh, relu, gelu, sigmoid, sqrt, rsqrt, abs, square };
enum class BinaryOp : uint8_t { add, sub, mul, div, maximum, minimum, pow, eq, ne, lt, le, gt, ge };
const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

namespace ops {

Tensor unary(UnaryOp op, const Tensor& x);
// dL/dx of y = op(x) given dL/dy; x and y as the forward saw them (gelu/relu use x, the rest y).
Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y);

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
