// CUDA binary ops between a tensor and a host scalar, passed to the kernel by value (no device
// copy, no sync). The scalar is converted to the compute type on the host exactly as the CPU
// does (A(s)). Commutative ops and comparisons with the scalar on the left are rewritten with
// it on the right (s < x is x > s, exactly), so only sub, div and pow need a left form.
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

template <class T, bool kLeft, class F>
static void run_scalar(F f, const Tensor& a, double s, const Tensor& out, const Launch& L) {
  using O = std::conditional_t<F::kCompare, bool, T>;
  using A = compute_t<T>;
  ScalarG<T, O, F, kLeft> g{f, static_cast<A>(s)};
  Map1<O, T, ScalarG<T, O, F, kLeft>> m{ptr<O>(out), ptr<const T>(a), g};
  launch_map("binary_scalar", out.shape(), {&out.strides(), &a.strides()}, m, L);
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_left, const Tensor& out) {
  DType want = is_comparison(op) ? DType::boolean : a.dtype();
  FATHOM_CHECK(out.dtype() == want && a.shape() == out.shape(), op_name(op), ": a ", a.desc(),
               ", out ", out.desc(), ": expected out of a's shape and dtype ", dtype_name(want));
  if (out.numel() == 0) return;
  if (scalar_left) {
    switch (op) {
      case BinaryOp::add: case BinaryOp::mul: case BinaryOp::maximum: case BinaryOp::minimum:
      case BinaryOp::eq: case BinaryOp::ne: scalar_left = false; break;
      case BinaryOp::lt: op = BinaryOp::gt; scalar_left = false; break;
      case BinaryOp::le: op = BinaryOp::ge; scalar_left = false; break;
      case BinaryOp::gt: op = BinaryOp::lt; scalar_left = false; break;
      case BinaryOp::ge: op = BinaryOp::le; scalar_left = false; break;
      default: break;  // sub, div, pow
    }
  }
  Launch L(out);
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    if (!scalar_left) {
      with_binary(op, [&]<class F>(F f) { run_scalar<T, false>(f, a, s, out, L); });
      return;
    }
    switch (op) {
      case BinaryOp::sub: return run_scalar<T, true>(SubF{}, a, s, out, L);
      case BinaryOp::div: return run_scalar<T, true>(DivF{}, a, s, out, L);
      case BinaryOp::pow: return run_scalar<T, true>(PowF{}, a, s, out, L);
      default: fathom::detail::fail(op_name(op), ": internal error: no left-scalar form");
    }
  });
}

}  // namespace fathom::cuda
