#include "fathom/core/ops/elementwise.h"

#include <cmath>
#include <limits>

#include "fathom/core/backend.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom {

#define FATHOM_NAME(name, ...) #name,
const char* op_name(UnaryOp op) {
  static const char* names[] = {FATHOM_UNARY_OPS(FATHOM_NAME)};
  return names[int(op)];
}

const char* op_name(BinaryOp op) {
  static const char* names[] = {FATHOM_BINARY_OPS(FATHOM_NAME)};
  return names[int(op)];
}
#undef FATHOM_NAME

namespace ops {

static void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  FATHOM_CHECK(a.device() == b.device(), op, ": tensors on different devices: ", a.desc(), " and ",
               b.desc(), "; move one with .to(device)");
}

// The dtype a binary op computes in: promotion, and true division for integers (as PyTorch).
static DType compute_dtype(BinaryOp op, DType a, DType b) {
  DType t = promote(a, b);
  if (op == BinaryOp::div && !is_floating(t)) t = DType::f32;
  FATHOM_CHECK(t != DType::boolean || is_comparison(op) || op == BinaryOp::maximum ||
                   op == BinaryOp::minimum,
               op_name(op), ": arithmetic on bool tensors is not supported; convert with .to(dtype)");
  return t;
}

Tensor unary(UnaryOp op, const Tensor& x) {
  FATHOM_CHECK(is_floating(x.dtype()), op_name(op), ": expected a floating-point tensor, got ",
               x.desc());
  Tensor out = empty(x.shape(), x.options());
  if (x.numel()) FATHOM_DISPATCH(x.device(), unary, op, x, out);
  return out;
}

// The backends get the one saved tensor the derivative reads (grad_y itself when none).
Tensor unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y) {
  GradReads reads = unary_backward_reads(op);
  const Tensor& s = reads == GradReads::x ? x : reads == GradReads::y ? y : grad_y;
  const char* which = reads == GradReads::x ? "x" : "y";
  FATHOM_CHECK(s.defined(), op_name(op), "_backward: needs the forward's ", which,
               ", got an undefined tensor (grad ", grad_y.desc(), ")");
  FATHOM_CHECK(grad_y.shape() == s.shape() && grad_y.dtype() == s.dtype() &&
                   grad_y.device() == s.device(),
               op_name(op), "_backward: grad ", grad_y.desc(), " does not match ", which, " ",
               s.desc());
  FATHOM_CHECK(is_floating(grad_y.dtype()), op_name(op),
               "_backward: expected a floating-point grad, got ", grad_y.desc());
  Tensor gx = empty(grad_y.shape(), grad_y.options());
  if (gx.numel()) FATHOM_DISPATCH(gx.device(), unary_backward, op, grad_y, s, gx);
  return gx;
}

// Bounds reach the kernels as doubles with +-inf for "none"; for integer tensors they must be
// integral so that the comparison in the tensor's type is exact.
static void check_clamp_bounds(const char* op, const Tensor& x, std::optional<double> lo,
                               std::optional<double> hi) {
  FATHOM_CHECK(lo || hi, op, ": at least one of min and max must be given (x ", x.desc(), ")");
  FATHOM_CHECK(x.dtype() != DType::boolean, op, ": not supported on bool tensors (x ", x.desc(),
               "); convert with .to(dtype)");
  for (std::optional<double> b : {lo, hi})
    FATHOM_CHECK(!b || !std::isnan(*b), op, ": a bound is NaN (x ", x.desc(), ")");
  if (!is_floating(x.dtype()))
    for (std::optional<double> b : {lo, hi})
      FATHOM_CHECK(!b || *b == std::trunc(*b), op, ": bound ", *b, " is not an integer but x is ",
                   x.desc(), "; convert x to a float dtype first");
}

static constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  check_clamp_bounds("clamp", x, lo, hi);
  Tensor out = empty(x.shape(), x.options());
  if (x.numel()) FATHOM_DISPATCH(x.device(), clamp, x, lo.value_or(-kInf), hi.value_or(kInf), out);
  return out;
}

Tensor clamp_backward(const Tensor& grad_y, const Tensor& x, std::optional<double> lo,
                      std::optional<double> hi) {
  check_clamp_bounds("clamp_backward", x, lo, hi);
  FATHOM_CHECK(is_floating(x.dtype()) && grad_y.shape() == x.shape() &&
                   grad_y.dtype() == x.dtype() && grad_y.device() == x.device(),
               "clamp_backward: grad ", grad_y.desc(), " does not match input ", x.desc());
  Tensor gx = empty(x.shape(), x.options());
  if (gx.numel())
    FATHOM_DISPATCH(x.device(), clamp_backward, grad_y, x, lo.value_or(-kInf), hi.value_or(kInf), gx);
  return gx;
}

void binary_out(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_same_device(op_name(op), a, b);
  check_same_device(op_name(op), a, out);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op_name(op));
  FATHOM_CHECK(shape == out.shape(), op_name(op), ": output ", out.desc(),
               " does not have the broadcast shape ", shape_str(shape));
  DType ct = compute_dtype(op, a.dtype(), b.dtype());
  DType want = is_comparison(op) ? DType::boolean : ct;
  FATHOM_CHECK(out.dtype() == want, op_name(op), ": output ", out.desc(), " should be ",
               dtype_name(want));
  if (!out.numel()) return;
  Tensor ae = expand(to(a, ct), shape), be = expand(to(b, ct), shape);
  FATHOM_DISPATCH(out.device(), binary, op, ae, be, out);
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_device(op_name(op), a, b);
  DType ct = compute_dtype(op, a.dtype(), b.dtype());
  Tensor out = empty(broadcast_shapes(a.shape(), b.shape(), op_name(op)),
                     {is_comparison(op) ? DType::boolean : ct, a.device()});
  binary_out(op, a, b, out);
  return out;
}

// A scalar keeps the tensor's dtype (PyTorch's rule), except that a fractional scalar or a
// division makes an integer tensor compute in f32.
static DType scalar_dtype(BinaryOp op, DType t, double s) {
  if (!is_floating(t) && (op == BinaryOp::div || s != double(int64_t(s)))) return DType::f32;
  return compute_dtype(op, t, t);
}

static Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool left) {
  // s op a is computed as a swapped_op(op) s where the table has one (s < a is a > s), so the
  // backends need a left-scalar form only for sub, div and pow.
  std::optional<BinaryOp> sw = swapped_op(op);
  if (left && sw) {
    op = *sw;
    left = false;
  }
  DType ct = scalar_dtype(op, a.dtype(), s);
  Tensor ac = to(a, ct);
  Tensor out = empty(a.shape(), {is_comparison(op) ? DType::boolean : ct, a.device()});
  if (out.numel()) FATHOM_DISPATCH(a.device(), binary_scalar, op, ac, s, left, out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, double b) { return binary_scalar(op, a, b, false); }
Tensor binary(BinaryOp op, double a, const Tensor& b) { return binary_scalar(op, b, a, true); }

void binary_out(BinaryOp op, const Tensor& a, double b, const Tensor& out) {
  check_same_device(op_name(op), a, out);
  FATHOM_CHECK(a.shape() == out.shape(), op_name(op), ": output ", out.desc(),
               " does not match input ", a.desc());
  DType want = is_comparison(op) ? DType::boolean : scalar_dtype(op, a.dtype(), b);
  FATHOM_CHECK(out.dtype() == want && a.dtype() == scalar_dtype(op, a.dtype(), b), op_name(op),
               ": in-place output ", out.desc(), " should be ", dtype_name(want));
  if (out.numel()) FATHOM_DISPATCH(a.device(), binary_scalar, op, a, b, false, out);
}

void add_(const Tensor& a, const Tensor& b, double alpha) {
  if (alpha == 1.0) return binary_out(BinaryOp::add, a, to(b, a.dtype()), a);
  binary_out(BinaryOp::add, a, binary(BinaryOp::mul, to(b, a.dtype()), alpha), a);
}

void mul_(const Tensor& a, double s) { binary_out(BinaryOp::mul, a, s, a); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  FATHOM_CHECK(cond.dtype() == DType::boolean, "where: condition must be bool, got ", cond.desc());
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(),
                                 "where");
  DType t = promote(a.dtype(), b.dtype());
  Tensor out = empty(shape, {t, a.device()});
  if (out.numel())
    FATHOM_DISPATCH(out.device(), where, expand(cond, shape), expand(to(a, t), shape),
                    expand(to(b, t), shape), out);
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  Tensor v = full({}, value, x.options());
  return where(mask, v, x);
}

}  // namespace ops
}  // namespace fathom
