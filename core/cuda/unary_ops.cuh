#pragma once
// The CUDA functors of the unary ops (the cuda_functor column of FATHOM_UNARY_OPS,
// core/ops/elementwise_table.h), in the compute type A (f32 for half types). Each mirrors its
// CPU functor (core/cpu/unary_ops.h, the reference): GELU is the tanh approximation, rsqrt is
// 1/sqrt (not the approximate rsqrtf), and backward(g, s) reads the tensor the table names.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

#define FATHOM_FORWARD(x) template <class A> static __device__ __forceinline__ A forward(A x)
#define FATHOM_BACKWARD(g, s) template <class A> static __device__ __forceinline__ A backward(A g, A s)

struct Neg {
  FATHOM_FORWARD(x) { return -x; }
  FATHOM_BACKWARD(g, none) { return -g; }
};
struct Exp {
  FATHOM_FORWARD(x) { return d_exp(x); }
  FATHOM_BACKWARD(g, y) { return g * y; }
};
struct Log {
  FATHOM_FORWARD(x) { return d_log(x); }
  FATHOM_BACKWARD(g, x) { return g / x; }
};
struct Tanh {
  FATHOM_FORWARD(x) { return d_tanh(x); }
  FATHOM_BACKWARD(g, y) { return g * (A(1) - y * y); }
};
struct Relu {
  FATHOM_FORWARD(x) { return x > A(0) ? x : A(0); }
  FATHOM_BACKWARD(g, x) { return x > A(0) ? g : A(0); }
};
struct Gelu {
  static constexpr double kSqrt2OverPi = 0.7978845608028654, kC = 0.044715;
  FATHOM_FORWARD(x) {
    A inner = A(kSqrt2OverPi) * (x + A(kC) * x * x * x);
    return A(0.5) * x * (A(1) + d_tanh(inner));
  }
  FATHOM_BACKWARD(g, x) {
    A inner = A(kSqrt2OverPi) * (x + A(kC) * x * x * x);
    A th = d_tanh(inner);
    A dinner = A(kSqrt2OverPi) * (A(1) + A(3 * kC) * x * x);
    return g * (A(0.5) * (A(1) + th) + A(0.5) * x * (A(1) - th * th) * dinner);
  }
};
struct Sigmoid {
  FATHOM_FORWARD(x) { return A(1) / (A(1) + d_exp(-x)); }
  FATHOM_BACKWARD(g, y) { return g * y * (A(1) - y); }
};
struct Sqrt {
  FATHOM_FORWARD(x) { return d_sqrt(x); }
  FATHOM_BACKWARD(g, y) { return g / (A(2) * y); }
};
struct Rsqrt {
  FATHOM_FORWARD(x) { return A(1) / d_sqrt(x); }
  FATHOM_BACKWARD(g, y) { return A(-0.5) * g * y * y * y; }
};
struct Abs {
  FATHOM_FORWARD(x) { return d_abs(x); }
  FATHOM_BACKWARD(g, x) { return x > A(0) ? g : x < A(0) ? -g : A(0); }
};
struct Square {
  FATHOM_FORWARD(x) { return x * x; }
  FATHOM_BACKWARD(g, x) { return A(2) * g * x; }
};
struct Sin {
  FATHOM_FORWARD(x) { return d_sin(x); }
  FATHOM_BACKWARD(g, x) { return g * d_cos(x); }
};
struct Cos {
  FATHOM_FORWARD(x) { return d_cos(x); }
  FATHOM_BACKWARD(g, x) { return -g * d_sin(x); }
};
struct Log1p {
  FATHOM_FORWARD(x) { return d_log1p(x); }
  FATHOM_BACKWARD(g, x) { return g / (A(1) + x); }
};
struct Expm1 {
  FATHOM_FORWARD(x) { return d_expm1(x); }
  FATHOM_BACKWARD(g, y) { return g * (y + A(1)); }
};
struct Sign {
  FATHOM_FORWARD(x) { return A((x > A(0)) - (x < A(0))); }
  FATHOM_BACKWARD(g, none) { return A(0); }
};
// d erf(x)/dx = 2/sqrt(pi) exp(-x^2); erff for f32 (halves compute in it), erf for f64.
struct Erf {
  FATHOM_FORWARD(x) {
    if constexpr (std::is_same_v<A, float>) return ::erff(x);
    else return ::erf(x);
  }
  FATHOM_BACKWARD(g, x) { return g * A(1.1283791670955126) * d_exp(-x * x); }
};

#undef FATHOM_FORWARD
#undef FATHOM_BACKWARD

}  // namespace fathom::cuda
