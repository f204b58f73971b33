// CUDA binary ops between a tensor and a host scalar, passed to the kernel by value (no device
// copy, no sync). The scalar is converted to the compute type on the host exactly as the CPU
// does (A(s)). A scalar on the left reaches here only for ops without a swapped form in the
// table (sub, div, pow; core/ops/elementwise.cpp moves it to the right for the others), so only
// those get a left-scalar kernel.
#include "fathom/core/cuda/binary_ops.cuh"
#include "fathom/core/cuda/loops.cuh"

namespace fathom::cuda {

template <class T, class O, class F, bool kLeft>
struct ScalarG {
  F f;
  compute_t<T> s;
  __device__ __forceinline__ O operator()(T x) const {
    using A = compute_t<T>;
    if constexpr (kLeft) return cvt<O>(f(s, A(to_c(x))));
    else return cvt<O>(f(A(to_c(x)), s));
  }
};

template <class T, class F, BinaryOp Op, bool kLeft>
static void run_scalar(const Tensor& a, double s, const Tensor& out, const Launch& L) {
  using O = binary_out_t<T, Op>;
  using A = compute_t<T>;
  ScalarG<T, O, F, kLeft> g{F{}, static_cast<A>(s)};
  Map1<O, T, ScalarG<T, O, F, kLeft>> m{ptr<O>(out), ptr<const T>(a), g};
  launch_map("binary_scalar", out.shape(), {&out.strides(), &a.strides()}, m, L);
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_left, const Tensor& out) {
  DType want = is_comparison(op) ? DType::boolean : a.dtype();
  FATHOM_CHECK(out.dtype() == want && a.shape() == out.shape(), op_name(op), ": a ", a.desc(),
               ", out ", out.desc(), ": expected out of a's shape and dtype ", dtype_name(want));
  FATHOM_CHECK(!scalar_left || !swapped_op(op), op_name(op),
               ": internal error: a left scalar reached the backend for an op with a swapped form");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    with_binary(op, [&]<class F, BinaryOp Op>() {
      if (!scalar_left) return run_scalar<T, F, Op, false>(a, s, out, L);
      if constexpr (!swapped_op(Op)) run_scalar<T, F, Op, true>(a, s, out, L);
    });
  });
}

}  // namespace fathom::cuda
