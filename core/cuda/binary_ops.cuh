#pragma once
// Arithmetic and comparison functors of the binary ops, in the compute type A (f32 for half
// types), with the CPU's exact semantics (core/cpu/elementwise.cpp): maximum/minimum propagate
// NaN, integer pow goes through f64 and llround. Shared by binary.cu and binary_scalar.cu.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

#define FATHOM_BINARY(Name, cmp, expr)                                           \
  struct Name {                                                                  \
    static constexpr bool kCompare = cmp;                                        \
    template <class A>                                                           \
    __device__ __forceinline__ auto operator()(A a, A b) const { return expr; }  \
  };
FATHOM_BINARY(AddF, false, a + b)
FATHOM_BINARY(SubF, false, a - b)
FATHOM_BINARY(MulF, false, a * b)
FATHOM_BINARY(DivF, false, a / b)
FATHOM_BINARY(MaximumF, false, (a > b || a != a) ? a : b)
FATHOM_BINARY(MinimumF, false, (a < b || a != a) ? a : b)
FATHOM_BINARY(PowF, false, d_pow(a, b))
FATHOM_BINARY(EqF, true, a == b)
FATHOM_BINARY(NeF, true, a != b)
FATHOM_BINARY(LtF, true, a < b)
FATHOM_BINARY(LeF, true, a <= b)
FATHOM_BINARY(GtF, true, a > b)
FATHOM_BINARY(GeF, true, a >= b)
#undef FATHOM_BINARY

// Calls k(functor) for op.
template <class K>
void with_binary(BinaryOp op, K&& k) {
  switch (op) {
    case BinaryOp::add: return k(AddF{});
    case BinaryOp::sub: return k(SubF{});
    case BinaryOp::mul: return k(MulF{});
    case BinaryOp::div: return k(DivF{});
    case BinaryOp::maximum: return k(MaximumF{});
    case BinaryOp::minimum: return k(MinimumF{});
    case BinaryOp::pow: return k(PowF{});
    case BinaryOp::eq: return k(EqF{});
    case BinaryOp::ne: return k(NeF{});
    case BinaryOp::lt: return k(LtF{});
    case BinaryOp::le: return k(LeF{});
    case BinaryOp::gt: return k(GtF{});
    case BinaryOp::ge: return k(GeF{});
  }
}

}  // namespace fathom::cuda
