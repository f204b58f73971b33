#pragma once
// The elementwise op tables: one line per op. Everything else that lists the ops is generated
// from these lines, so adding an op is a line here, its functors and its test
// (docs/adding_an_op.md):
//   - the UnaryOp / BinaryOp enums, op_name(), kNumUnaryOps, kNumBinaryOps, is_comparison()
//     (core/ops/elementwise.h)
//   - what a unary backward reads, ops::unary_backward_reads, and swapped_op()
//   - the CPU dispatch (core/cpu/elementwise.cpp) and the CUDA dispatch (core/cuda/unary.cu,
//     binary_ops.cuh)
//   - the differentiable free functions of the unary ops and what their graph node saves
//     (autograd/ops.h, autograd/ops/elementwise.cpp).
// The binary ops' gradients are written by hand in autograd/ops/elementwise.cpp (broadcasting,
// scalar forms, ties), and comparisons have none.
//
// X(name, reads, cpu_functor, cuda_functor): a unary op on float dtypes (halves compute in f32).
//   reads: the saved tensor the backward formula reads besides grad_y: x (the input), y (the
//          output, where the derivative is cheaper in it), or none. Autograd saves only that one.
//   cpu_functor (core/cpu/unary_ops.h), cuda_functor (core/cuda/unary_ops.cuh): a struct with
//          static forward(x) -> y and backward(grad_y, s) -> grad_x, s being what `reads` names;
//          the CPU one is the reference the CUDA one mirrors.
// Notes: gelu is the tanh approximation (GPT-2's); abs has gradient 0 at 0; sign maps NaN to 0
// ((x > 0) - (x < 0), PyTorch's formula) and has a zero gradient everywhere; log1p and expm1 are
// accurate near 0.
#define FATHOM_UNARY_OPS(X)                      \
  X(neg,     none, cpu::Neg,     cuda::Neg)      \
  X(exp,     y,    cpu::Exp,     cuda::Exp)      \
  X(log,     x,    cpu::Log,     cuda::Log)      \
  X(tanh,    y,    cpu::Tanh,    cuda::Tanh)     \
  X(relu,    x,    cpu::Relu,    cuda::Relu)     \
  X(gelu,    x,    cpu::Gelu,    cuda::Gelu)     \
  X(sigmoid, y,    cpu::Sigmoid, cuda::Sigmoid)  \
  X(sqrt,    y,    cpu::Sqrt,    cuda::Sqrt)     \
  X(rsqrt,   y,    cpu::Rsqrt,   cuda::Rsqrt)    \
  X(abs,     x,    cpu::Abs,     cuda::Abs)      \
  X(square,  x,    cpu::Square,  cuda::Square)   \
  X(sin,     x,    cpu::Sin,     cuda::Sin)      \
  X(cos,     x,    cpu::Cos,     cuda::Cos)      \
  X(log1p,   x,    cpu::Log1p,   cuda::Log1p)    \
  X(expm1,   y,    cpu::Expm1,   cuda::Expm1)    \
  X(sign,    none, cpu::Sign,    cuda::Sign)     \
  X(erf,     x,    cpu::Erf,     cuda::Erf)

// X(name, kind, swapped, cpu_functor, cuda_functor): a binary op on two tensors broadcast to
// one shape, or a tensor and a scalar, computed in the promoted dtype (core/ops/elementwise.cpp).
//   kind: arith (the result has the compute dtype) or compare (the result is bool).
//   swapped: the op that gives the same result with the operands exchanged (a lt b == b gt a;
//          maximum and minimum up to the sign of a zero result), or none. A scalar on the left
//          of an op that has one is moved to the right before the backends see it, so they
//          need a left-scalar form only for the others.
//   cpu_functor (core/cpu/binary_ops.h), cuda_functor (core/cuda/binary_ops.cuh): a struct whose
//          operator()(a, b) computes the op in the compute type.
// Notes: maximum and minimum propagate NaN; integer pow goes through f64 and rounds.
#define FATHOM_BINARY_OPS(X)                                 \
  X(add,     arith,   add,     cpu::Add,     cuda::Add)      \
  X(sub,     arith,   none,    cpu::Sub,     cuda::Sub)      \
  X(mul,     arith,   mul,     cpu::Mul,     cuda::Mul)      \
  X(div,     arith,   none,    cpu::Div,     cuda::Div)      \
  X(maximum, arith,   maximum, cpu::Maximum, cuda::Maximum)  \
  X(minimum, arith,   minimum, cpu::Minimum, cuda::Minimum)  \
  X(pow,     arith,   none,    cpu::Pow,     cuda::Pow)      \
  X(eq,      compare, eq,      cpu::Eq,      cuda::Eq)       \
  X(ne,      compare, ne,      cpu::Ne,      cuda::Ne)       \
  X(lt,      compare, gt,      cpu::Lt,      cuda::Lt)       \
  X(le,      compare, ge,      cpu::Le,      cuda::Le)       \
  X(gt,      compare, lt,      cpu::Gt,      cuda::Gt)       \
  X(ge,      compare, le,      cpu::Ge,      cuda::Ge)
