// Differentiable elementwise ops: forward and backward side by side. Binary backwards return
// gradients in the broadcast shape and the compute dtype; the engine sums and casts them back
// to each input (autograd/engine.cpp: conform).
#include <algorithm>

#include "fathom/autograd/ops/common.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::saved;

static Tensor bin(BinaryOp op, const Tensor& a, const Tensor& b) { return ops::binary(op, a, b); }
static Tensor bin(BinaryOp op, const Tensor& a, double b) { return ops::binary(op, a, b); }
static Tensor bin(BinaryOp op, double a, const Tensor& b) { return ops::binary(op, a, b); }
static Tensor negate(const Tensor& g) { return ops::unary(UnaryOp::neg, g); }

// ---- add / sub / mul / div ----

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = bin(BinaryOp::add, a, b);
  if (!needs_grad({a, b})) return y;
  return record("add", {a, b}, y, [](const Grads& g) -> Grads { return {g[0], g[0]}; });
}
Tensor add(const Tensor& a, double b) {
  Tensor y = bin(BinaryOp::add, a, b);
  if (!needs_grad({a})) return y;
  return record("add", {a}, y, [](const Grads& g) -> Grads { return {g[0]}; });
}
Tensor add(double a, const Tensor& b) { return add(b, a); }

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = bin(BinaryOp::sub, a, b);
  if (!needs_grad({a, b})) return y;
  bool need_b = b.requires_grad();
  return record("sub", {a, b}, y, [need_b](const Grads& g) -> Grads {
    return {g[0], need_b ? negate(g[0]) : Tensor()};
  });
}
Tensor sub(const Tensor& a, double b) {
  Tensor y = bin(BinaryOp::sub, a, b);
  if (!needs_grad({a})) return y;
  return record("sub", {a}, y, [](const Grads& g) -> Grads { return {g[0]}; });
}
Tensor sub(double a, const Tensor& b) {
  Tensor y = bin(BinaryOp::sub, a, b);
  if (!needs_grad({b})) return y;
  return record("sub", {b}, y, [](const Grads& g) -> Grads { return {negate(g[0])}; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = bin(BinaryOp::mul, a, b);
  if (!needs_grad({a, b})) return y;
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  // Each side saves only what the other side's gradient needs.
  Tensor sa = need_b ? saved(a) : Tensor(), sb = need_a ? saved(b) : Tensor();
  return record("mul", {a, b}, y, [sa, sb](const Grads& g) -> Grads {
    return {sb.defined() ? bin(BinaryOp::mul, g[0], sb) : Tensor(),
            sa.defined() ? bin(BinaryOp::mul, g[0], sa) : Tensor()};
  });
}
Tensor mul(const Tensor& a, double b) {
  Tensor y = bin(BinaryOp::mul, a, b);
  if (!needs_grad({a})) return y;
  return record("mul", {a}, y, [b](const Grads& g) -> Grads { return {bin(BinaryOp::mul, g[0], b)}; });
}
Tensor mul(double a, const Tensor& b) { return mul(b, a); }

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = bin(BinaryOp::div, a, b);
  if (!needs_grad({a, b})) return y;
  bool need_b = b.requires_grad();
  // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(1/b) * y.
  return record("div", {a, b}, y,
                [b = saved(b), y = need_b ? saved(y) : Tensor()](const Grads& g) -> Grads {
                  Tensor ga = bin(BinaryOp::div, g[0], b);
                  Tensor gb = y.defined() ? negate(bin(BinaryOp::mul, ga, y)) : Tensor();
                  return {ga, gb};
                });
}
Tensor div(const Tensor& a, double b) {
  Tensor y = bin(BinaryOp::div, a, b);
  if (!needs_grad({a})) return y;
  return record("div", {a}, y, [b](const Grads& g) -> Grads { return {bin(BinaryOp::div, g[0], b)}; });
}
Tensor div(double a, const Tensor& b) {
  Tensor y = bin(BinaryOp::div, a, b);
  if (!needs_grad({b})) return y;
  // d(s/b)/db = -s/b^2 = -y/b.
  return record("div", {b}, y, [b = saved(b), y = saved(y)](const Grads& g) -> Grads {
    return {negate(bin(BinaryOp::div, bin(BinaryOp::mul, g[0], y), b))};
  });
}

// ---- maximum / minimum / pow ----

// The gradient of max(a, b) goes to the larger; on a tie each side gets half (PyTorch's rule),
// which keeps the two-sided finite difference and the analytic gradient in agreement.
static Tensor extremum(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  Tensor y = bin(op, a, b);
  if (!needs_grad({a, b})) return y;
  BinaryOp wins = op == BinaryOp::maximum ? BinaryOp::gt : BinaryOp::lt;
  return record(name, {a, b}, y, [a = saved(a), b = saved(b), wins](const Grads& g) -> Grads {
    DType t = g[0].dtype();
    Tensor tie = bin(BinaryOp::mul, ops::to(bin(BinaryOp::eq, a, b), t), 0.5);
    Tensor wa = bin(BinaryOp::add, ops::to(bin(wins, a, b), t), tie);
    Tensor wb = bin(BinaryOp::add, ops::to(bin(wins, b, a), t), tie);
    return {bin(BinaryOp::mul, g[0], wa), bin(BinaryOp::mul, g[0], wb)};
  });
}
Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::maximum, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::minimum, "minimum", a, b); }

Tensor pow(const Tensor& x, double p) {
  Tensor y = bin(BinaryOp::pow, x, p);
  if (!needs_grad({x})) return y;
  return record("pow", {x}, y, [x = saved(x), p](const Grads& g) -> Grads {
    if (p == 0) return {zeros_like(g[0])};
    Tensor d = bin(BinaryOp::mul, bin(BinaryOp::pow, x, p - 1), p);
    return {bin(BinaryOp::mul, g[0], d)};
  });
}

// d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a), taken as 0 where a == 0 and b >= 0 (PyTorch's
// convention, instead of the NaN that 0 * log(0) gives).
static Tensor pow_exponent_grad(const Tensor& g, const Tensor& a, const Tensor& y,
                                const Tensor& b) {
  Tensor d = bin(BinaryOp::mul, bin(BinaryOp::mul, g, y), ops::unary(UnaryOp::log, a));
  // minimum of two bool tensors is their logical and.
  Tensor at_zero = bin(BinaryOp::minimum, bin(BinaryOp::eq, a, 0.0), bin(BinaryOp::ge, b, 0.0));
  return ops::masked_fill(d, at_zero, 0.0);
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor y = bin(BinaryOp::pow, a, b);
  if (!needs_grad({a, b})) return y;
  FATHOM_CHECK(is_floating(y.dtype()), "pow: gradients need a floating-point result, got ",
               y.desc(), " from a ", a.desc(), ", b ", b.desc());
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  DType t = y.dtype();
  return record("pow", {a, b}, y,
                [a = saved(a), b = saved(b), y = need_b ? saved(y) : Tensor(), need_a, t](
                    const Grads& g) -> Grads {
                  Tensor ac = ops::to(a, t), bc = ops::to(b, t);
                  Tensor ga, gb;
                  // Where b == 0 the base's gradient is 0, also at a == 0 (0 * 0^-1 is NaN).
                  if (need_a)
                    ga = ops::masked_fill(
                        bin(BinaryOp::mul, bin(BinaryOp::mul, g[0], bc),
                            bin(BinaryOp::pow, ac, bin(BinaryOp::sub, bc, 1.0))),
                        bin(BinaryOp::eq, bc, 0.0), 0.0);
                  if (y.defined()) gb = pow_exponent_grad(g[0], ac, y, bc);
                  return {ga, gb};
                });
}

Tensor pow(double a, const Tensor& b) {
  Tensor y = bin(BinaryOp::pow, a, b);
  if (!needs_grad({b})) return y;
  return record("pow", {b}, y, [a, b = saved(b), y = saved(y)](const Grads& g) -> Grads {
    Tensor base = full({}, a, {y.dtype(), y.device()});
    return {pow_exponent_grad(g[0], base, y, ops::to(b, y.dtype()))};
  });
}

// ---- unary ----

// One differentiable function per line of FATHOM_UNARY_OPS. The graph node saves only the one
// tensor the derivative reads (the table's `reads`), which halves what the graph holds on to.
static Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor y = ops::unary(op, x);
  if (!needs_grad({x})) return y;
  GradReads reads = ops::unary_backward_reads(op);
  return record(op_name(op), {x}, y,
                [op, sx = reads == GradReads::x ? saved(x) : Tensor(),
                 sy = reads == GradReads::y ? saved(y) : Tensor()](const Grads& g) -> Grads {
                  return {ops::unary_backward(op, g[0], sx, sy)};
                });
}

#define FATHOM_DEFINE(name, ...) \
  Tensor name(const Tensor& x) { return unary(UnaryOp::name, x); }
FATHOM_UNARY_OPS(FATHOM_DEFINE)
#undef FATHOM_DEFINE

// ---- clamp ----

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  Tensor y = ops::clamp(x, min, max);
  if (!needs_grad({x})) return y;
  return record("clamp", {x}, y, [x = saved(x), min, max](const Grads& g) -> Grads {
    return {ops::clamp_backward(g[0], x, min, max)};
  });
}
Tensor clamp_min(const Tensor& x, double min) { return clamp(x, min, std::nullopt); }
Tensor clamp_max(const Tensor& x, double max) { return clamp(x, std::nullopt, max); }

// ---- comparisons: raw kernels, no history ----

Tensor eq(const Tensor& a, const Tensor& b) { return bin(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return bin(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return bin(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return bin(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return bin(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return bin(BinaryOp::ge, a, b); }
Tensor eq(const Tensor& a, double b) { return bin(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, double b) { return bin(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, double b) { return bin(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, double b) { return bin(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, double b) { return bin(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, double b) { return bin(BinaryOp::ge, a, b); }

// ---- selection ----

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor y = ops::where(cond, a, b);
  if (!needs_grad({a, b})) return y;
  return record("where", {a, b}, y, [cond = saved(cond)](const Grads& g) -> Grads {
    Tensor zero = zeros({}, g[0].options());
    return {ops::where(cond, g[0], zero), ops::where(cond, zero, g[0])};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  FATHOM_CHECK(mask.dtype() == DType::boolean, "masked_fill: mask must be bool, got ",
               mask.desc(), " (x ", x.desc(), ")");
  Tensor y = ops::masked_fill(x, mask, value);
  FATHOM_CHECK(y.shape() == x.shape(), "masked_fill: mask ", mask.desc(),
               " must broadcast to x ", x.desc());
  if (!needs_grad({x})) return y;
  return record("masked_fill", {x}, y, [mask = saved(mask)](const Grads& g) -> Grads {
    return {ops::masked_fill(g[0], mask, 0.0)};
  });
}

Tensor dropout(const Tensor& x, double p, bool train, Generator* gen) {
  FATHOM_CHECK(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got ", p, " (x ", x.desc(), ")");
  if (!train || p == 0) return x;
  FATHOM_CHECK(is_floating(x.dtype()), "dropout: expected a floating-point tensor, got ", x.desc());
  Tensor scale;
  if (p == 1) {
    scale = zeros(x.shape(), x.options());
  } else {
    Tensor u = rand(x.shape(), {DType::f32, x.device()}, gen);
    scale = bin(BinaryOp::mul, ops::to(bin(BinaryOp::ge, u, p), x.dtype()), 1.0 / (1.0 - p));
  }
  Tensor y = bin(BinaryOp::mul, x, scale);
  if (!needs_grad({x})) return y;
  return record("dropout", {x}, y, [scale](const Grads& g) -> Grads {
    return {bin(BinaryOp::mul, g[0], scale)};
  });
}

}  // namespace fathom
