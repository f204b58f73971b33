#pragma once
// Elementwise ops with numpy broadcasting, any strides. Arithmetic promotes dtypes
// (core/dtype.h: promote); comparisons return bool. Half types compute in f32.
#include <limits>
#include <optional>
#include <type_traits>

#include "fathom/core/ops/elementwise_table.h"
#include "fathom/core/tensor.h"

namespace fathom {

// The ops, in the order of their table (core/ops/elementwise_table.h), which documents them.
#define FATHOM_ENUM_ENTRY(name, ...) name,
enum class UnaryOp : uint8_t { FATHOM_UNARY_OPS(FATHOM_ENUM_ENTRY) };
enum class BinaryOp : uint8_t { FATHOM_BINARY_OPS(FATHOM_ENUM_ENTRY) };
#undef FATHOM_ENUM_ENTRY
#define FATHOM_COUNT(...) +1
inline constexpr int kNumUnaryOps = 0 FATHOM_UNARY_OPS(FATHOM_COUNT);
inline constexpr int kNumBinaryOps = 0 FATHOM_BINARY_OPS(FATHOM_COUNT);
#undef FATHOM_COUNT
const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);

// What a unary op's backward reads besides grad_y (the table's `reads` column).
enum class GradReads : uint8_t { none, x, y };
// A binary op's result: the compute dtype, or bool (the table's `kind` column).
enum class BinaryKind : uint8_t { arith, compare };

namespace detail {
#define FATHOM_READS(name, reads, ...) GradReads::reads,
inline constexpr GradReads kUnaryReads[] = {FATHOM_UNARY_OPS(FATHOM_READS)};
#undef FATHOM_READS
#define FATHOM_KIND(name, kind, ...) BinaryKind::kind,
inline constexpr BinaryKind kBinaryKind[] = {FATHOM_BINARY_OPS(FATHOM_KIND)};
#undef FATHOM_KIND
// The `swapped` column: BinarySwap has BinaryOp's names in the same order, then `none`, so the
// table can say none where BinaryOp has no such value.
#define FATHOM_ENUM_ENTRY(name, ...) name,
enum class BinarySwap : uint8_t { FATHOM_BINARY_OPS(FATHOM_ENUM_ENTRY) none };
#undef FATHOM_ENUM_ENTRY
#define FATHOM_SWAP(name, kind, swapped, ...) BinarySwap::swapped,
inline constexpr BinarySwap kBinarySwap[] = {FATHOM_BINARY_OPS(FATHOM_SWAP)};
#undef FATHOM_SWAP
}  // namespace detail

inline constexpr bool is_comparison(BinaryOp op) {
  return detail::kBinaryKind[int(op)] == BinaryKind::compare;
}
// The op with the operands exchanged (b op a == a swapped_op(op) b), if the table gives one.
inline constexpr std::optional<BinaryOp> swapped_op(BinaryOp op) {
  detail::BinarySwap s = detail::kBinarySwap[int(op)];
  if (s == detail::BinarySwap::none) return std::nullopt;
  return BinaryOp(int(s));
}

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
// unary_backward_reads); the other may be undefined.
Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y);

// Which of x and y op's derivative is computed from (exp, tanh, sigmoid, ... reuse the output;
// neg and sign read neither). Autograd saves only that one.
inline constexpr GradReads unary_backward_reads(UnaryOp op) {
  return detail::kUnaryReads[int(op)];
}
inline bool unary_backward_reads_x(UnaryOp op) { return unary_backward_reads(op) == GradReads::x; }

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
