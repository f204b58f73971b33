// CUDA binary ops on two tensors already expanded to out's shape (stride 0 where broadcast).
// out may alias a (in place): every element is read before it is written, by the same thread.
#include "fathom/core/cuda/binary_ops.cuh"
#include "fathom/core/cuda/loops.cuh"

namespace fathom::cuda {

template <class T, class O, class F>
struct BinaryG {
  F f;
  __device__ __forceinline__ O operator()(T a, T b) const {
    using A = compute_t<T>;
    return cvt<O>(f(A(to_c(a)), A(to_c(b))));
  }
};

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  DType want = is_comparison(op) ? DType::boolean : a.dtype();
  FATHOM_CHECK(a.dtype() == b.dtype() && out.dtype() == want && a.shape() == out.shape() &&
                   b.shape() == out.shape(),
               op_name(op), ": a ", a.desc(), ", b ", b.desc(), ", out ", out.desc(),
               ": expected a, b expanded to out's shape in one dtype, out ", dtype_name(want));
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    with_binary(op, [&]<class F, BinaryOp Op>() {
      using O = binary_out_t<T, Op>;
      Map2<O, T, T, BinaryG<T, O, F>> m{ptr<O>(out), ptr<const T>(a), ptr<const T>(b), {}};
      launch_map(op_name(op), out.shape(), {&out.strides(), &a.strides(), &b.strides()}, m, L);
    });
  });
}

}  // namespace fathom::cuda
