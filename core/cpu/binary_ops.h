#pragma once
// The CPU functors of the binary ops (the cpu_functor column of FATHOM_BINARY_OPS,
// core/ops/elementwise_table.h), in the compute type A. The reference that the CUDA functors
// (core/cuda/binary_ops.cuh) mirror: maximum/minimum propagate NaN, integer pow goes through
// f64 and llround.
#include <cmath>
#include <type_traits>

#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

#define FATHOM_BINARY(Name, expr)                                                  \
  struct Name {                                                                    \
    template <class A>                                                             \
    FATHOM_INLINE auto operator()(A a, A b) const { return expr; }                 \
  };
FATHOM_BINARY(Add, a + b)
FATHOM_BINARY(Sub, a - b)
FATHOM_BINARY(Mul, a * b)
FATHOM_BINARY(Div, a / b)
FATHOM_BINARY(Maximum, a > b || a != a ? a : b)
FATHOM_BINARY(Minimum, a < b || a != a ? a : b)
FATHOM_BINARY(Eq, a == b)
FATHOM_BINARY(Ne, a != b)
FATHOM_BINARY(Lt, a < b)
FATHOM_BINARY(Le, a <= b)
FATHOM_BINARY(Gt, a > b)
FATHOM_BINARY(Ge, a >= b)
#undef FATHOM_BINARY

struct Pow {
  template <class A>
  A operator()(A a, A b) const {
    if constexpr (std::is_integral_v<A>) return A(std::llround(std::pow(double(a), double(b))));
    else return std::pow(a, b);
  }
};

}  // namespace fathom::cpu
