#pragma once
// The CUDA functors of the binary ops (the cuda_functor column of FATHOM_BINARY_OPS,
// core/ops/elementwise_table.h), in the compute type A (f32 for half types), with the CPU's
// exact semantics (core/cpu/binary_ops.h): maximum/minimum propagate NaN, integer pow goes
// through f64 and llround. Shared by binary.cu and binary_scalar.cu.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

#define FATHOM_BINARY(Name, expr)                                                \
  struct Name {                                                                  \
    template <class A>                                                           \
    __device__ __forceinline__ auto operator()(A a, A b) const { return expr; }  \
  };
FATHOM_BINARY(Add, a + b)
FATHOM_BINARY(Sub, a - b)
FATHOM_BINARY(Mul, a * b)
FATHOM_BINARY(Div, a / b)
FATHOM_BINARY(Maximum, (a > b || a != a) ? a : b)
FATHOM_BINARY(Minimum, (a < b || a != a) ? a : b)
FATHOM_BINARY(Pow, d_pow(a, b))
FATHOM_BINARY(Eq, a == b)
FATHOM_BINARY(Ne, a != b)
FATHOM_BINARY(Lt, a < b)
FATHOM_BINARY(Le, a <= b)
FATHOM_BINARY(Gt, a > b)
FATHOM_BINARY(Ge, a >= b)
#undef FATHOM_BINARY

// The output element type of op on inputs T.
template <class T, BinaryOp Op>
using binary_out_t = std::conditional_t<is_comparison(Op), bool, T>;

// Calls k.template operator()<F, Op>() with op's functor type F and op as a constant.
template <class K>
void with_binary(BinaryOp op, K&& k) {
  switch (op) {
#define FATHOM_CASE(name, kind, swapped, cpu_f, cuda_f) \
  case BinaryOp::name: return k.template operator()<cuda_f, BinaryOp::name>();
    FATHOM_BINARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
  }
}

}  // namespace fathom::cuda
