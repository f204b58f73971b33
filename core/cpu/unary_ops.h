#pragma once
// The CPU functors of the unary ops (the cpu_functor column of FATHOM_UNARY_OPS,
// core/ops/elementwise_table.h): each op's forward next to its backward, in the compute type A
// (f32 for half types, f64 for f64). backward(g, s) gets grad_y and the saved tensor the table's
// `reads` column names. These are the reference the CUDA functors (core/cuda/unary_ops.cuh)
// mirror. A functor may add f32x4 forms (forward_x4, backward_x4) that the f32 loops then use.
#include <cmath>

#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

#define FATHOM_FORWARD(x) template <class A> static FATHOM_INLINE A forward(A x)
#define FATHOM_BACKWARD(g, s) template <class A> static FATHOM_INLINE A backward(A g, A s)

struct Neg {
  FATHOM_FORWARD(x) { return -x; }
  FATHOM_BACKWARD(g, none) { return -g; }
};
struct Exp {
  FATHOM_FORWARD(x) { return std::exp(x); }
  FATHOM_BACKWARD(g, y) { return g * y; }
};
struct Log {
  FATHOM_FORWARD(x) { return std::log(x); }
  FATHOM_BACKWARD(g, x) { return g / x; }
};
struct Tanh {
  FATHOM_FORWARD(x) { return std::tanh(x); }
  FATHOM_BACKWARD(g, y) { return g * (A(1) - y * y); }
};
struct Relu {
  FATHOM_FORWARD(x) { return x > A(0) ? x : A(0); }
  FATHOM_BACKWARD(g, x) { return x > A(0) ? g : A(0); }
};

// GELU, tanh form: 0.5 x (1 + tanh(u)), u = k (x + c x^3).
struct Gelu {
  static constexpr double kSqrt2OverPi = 0.7978845608028654, kC = 0.044715;
  FATHOM_FORWARD(x) {
    A inner = A(kSqrt2OverPi) * (x + A(kC) * x * x * x);
    return A(0.5) * x * (A(1) + std::tanh(inner));
  }
  FATHOM_BACKWARD(g, x) {
    A inner = A(kSqrt2OverPi) * (x + A(kC) * x * x * x);
    A th = std::tanh(inner);
    A dinner = A(kSqrt2OverPi) * (A(1) + A(3 * kC) * x * x);
    return g * (A(0.5) * (A(1) + th) + A(0.5) * x * (A(1) - th * th) * dinner);
  }
  // The f32 forms, four lanes without libm: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), and sigmoid
  // from exp_approx. libm's scalar tanhf was a sixth of a CPU GPT step. e = exp(-2u)
  // overflowing to inf gives s = 0 (the exact answer rounds to -0 there); NaN stays NaN.
  static f32x4 forward_x4(f32x4 x) {
    f32x4 u = float(kSqrt2OverPi) * (x + float(kC) * x * x * x);
    return x / (1.0f + exp_approx(-2.0f * u));
  }
  // d/dx [x s(2u)] = s + x s (1 - s) 2u', with s = sigmoid(2u) and u' = k (1 + 3c x^2).
  static f32x4 backward_x4(f32x4 g, f32x4 x) {
    f32x4 u = float(kSqrt2OverPi) * (x + float(kC) * x * x * x);
    f32x4 s = 1.0f / (1.0f + exp_approx(-2.0f * u));
    f32x4 du = float(kSqrt2OverPi) * (1.0f + float(3 * kC) * x * x);
    return g * (s + x * s * (1.0f - s) * 2.0f * du);
  }
};

struct Sigmoid {
  FATHOM_FORWARD(x) { return A(1) / (A(1) + std::exp(-x)); }
  FATHOM_BACKWARD(g, y) { return g * y * (A(1) - y); }
};
struct Sqrt {
  FATHOM_FORWARD(x) { return std::sqrt(x); }
  FATHOM_BACKWARD(g, y) { return g / (A(2) * y); }
};
// 1/sqrt, not an approximate rsqrt.
struct Rsqrt {
  FATHOM_FORWARD(x) { return A(1) / std::sqrt(x); }
  FATHOM_BACKWARD(g, y) { return A(-0.5) * g * y * y * y; }
};
struct Abs {
  FATHOM_FORWARD(x) { return std::abs(x); }
  FATHOM_BACKWARD(g, x) { return x > A(0) ? g : x < A(0) ? -g : A(0); }
};
struct Square {
  FATHOM_FORWARD(x) { return x * x; }
  FATHOM_BACKWARD(g, x) { return A(2) * g * x; }
};
struct Sin {
  FATHOM_FORWARD(x) { return std::sin(x); }
  FATHOM_BACKWARD(g, x) { return g * std::cos(x); }
};
struct Cos {
  FATHOM_FORWARD(x) { return std::cos(x); }
  FATHOM_BACKWARD(g, x) { return -g * std::sin(x); }
};
struct Log1p {
  FATHOM_FORWARD(x) { return std::log1p(x); }
  FATHOM_BACKWARD(g, x) { return g / (A(1) + x); }
};
// d expm1(x)/dx = exp(x) = y + 1.
struct Expm1 {
  FATHOM_FORWARD(x) { return std::expm1(x); }
  FATHOM_BACKWARD(g, y) { return g * (y + A(1)); }
};
struct Sign {
  FATHOM_FORWARD(x) { return A((x > A(0)) - (x < A(0))); }
  FATHOM_BACKWARD(g, none) { return A(0); }
};
// d erf(x)/dx = 2/sqrt(pi) exp(-x^2).
struct Erf {
  FATHOM_FORWARD(x) { return std::erf(x); }
  FATHOM_BACKWARD(g, x) { return g * A(1.1283791670955126) * std::exp(-x * x); }
};

#undef FATHOM_FORWARD
#undef FATHOM_BACKWARD

}  // namespace fathom::cpu
