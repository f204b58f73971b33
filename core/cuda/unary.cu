// CUDA unary ops and their backward, float dtypes only (clamp, at the end, takes any non-bool
// dtype). The dispatch comes from FATHOM_UNARY_OPS (core/ops/elementwise_table.h), the formulas
// from core/cuda/unary_ops.cuh.
#include "fathom/core/cuda/loops.cuh"
#include "fathom/core/cuda/unary_ops.cuh"

namespace fathom::cuda {

template <class T, class F>
struct UnaryG {
  __device__ __forceinline__ T operator()(T x) const {
    return cvt<T>(F::forward(compute_t<T>(to_c(x))));
  }
};

template <class T, class F>
struct UnaryBwdG {
  __device__ __forceinline__ T operator()(T g, T v) const {
    return cvt<T>(F::backward(compute_t<T>(to_c(g)), compute_t<T>(to_c(v))));
  }
};

// ---- launchers ----

template <class T, class F>
static void run_unary(const Tensor& x, const Tensor& out, const Launch& L) {
  Map1<T, T, UnaryG<T, F>> m{ptr<T>(out), ptr<const T>(x), {}};
  launch_map("unary", out.shape(), {&out.strides(), &x.strides()}, m, L);
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  FATHOM_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype(), op_name(op), ": x ",
               x.desc(), " and out ", out.desc(), " must have one shape and dtype");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_float(x.dtype(), op_name(op), [&]<class T>() {
    switch (op) {
#define FATHOM_CASE(name, reads, cpu_f, cuda_f) \
  case UnaryOp::name: return run_unary<T, cuda_f>(x, out, L);
      FATHOM_UNARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
    }
  });
}

template <class T, class F>
static void run_bwd(const Tensor& gy, const Tensor& s, const Tensor& gx, const Launch& L) {
  Map2<T, T, T, UnaryBwdG<T, F>> m{ptr<T>(gx), ptr<const T>(gy), ptr<const T>(s), {}};
  launch_map("unary_backward", gx.shape(), {&gx.strides(), &gy.strides(), &s.strides()}, m, L);
}

void unary_backward(UnaryOp op, const Tensor& gy, const Tensor& s, const Tensor& gx) {
  FATHOM_CHECK(gy.shape() == gx.shape() && gy.dtype() == gx.dtype() && s.shape() == gx.shape() &&
                   s.dtype() == gx.dtype(),
               op_name(op), "_backward: grad_y ", gy.desc(), ", saved ", s.desc(), ", grad_x ",
               gx.desc(), " must have one shape and dtype");
  if (gx.numel() == 0) return;
  Launch L(gx);
  dispatch_float(gx.dtype(), op_name(op), [&]<class T>() {
    switch (op) {
#define FATHOM_CASE(name, reads, cpu_f, cuda_f) \
  case UnaryOp::name: return run_bwd<T, cuda_f>(gy, s, gx, L);
      FATHOM_UNARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
    }
  });
}

// ---- clamp ----

// Two selects as on the CPU: NaN fails both comparisons and passes through.
template <class T>
struct ClampG {
  compute_t<T> lo, hi;
  __device__ __forceinline__ T operator()(T x) const {
    compute_t<T> v = to_c(x);
    v = v < lo ? lo : v;
    return cvt<T>(v > hi ? hi : v);
  }
};

template <class T>
struct ClampBwdG {
  compute_t<T> lo, hi;
  __device__ __forceinline__ T operator()(T g, T x) const {
    compute_t<T> v = to_c(x);
    return v >= lo && v <= hi ? g : cvt<T>(compute_t<T>(0));
  }
};

void clamp(const Tensor& x, double lo, double hi, const Tensor& out) {
  FATHOM_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype() && x.dtype() != DType::boolean,
               "clamp: x ", x.desc(), " and out ", out.desc(),
               " must have one shape and a non-bool dtype");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(x.dtype(), "clamp", [&]<class T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      using A = compute_t<T>;
      ClampG<T> g{fathom::detail::clamp_bound<A>(lo), fathom::detail::clamp_bound<A>(hi)};
      Map1<T, T, ClampG<T>> m{ptr<T>(out), ptr<const T>(x), g};
      launch_map("clamp", out.shape(), {&out.strides(), &x.strides()}, m, L);
    }
  });
}

void clamp_backward(const Tensor& gy, const Tensor& x, double lo, double hi, const Tensor& gx) {
  FATHOM_CHECK(gy.shape() == gx.shape() && x.shape() == gx.shape() && gy.dtype() == gx.dtype() &&
                   x.dtype() == gx.dtype(),
               "clamp_backward: grad_y ", gy.desc(), ", x ", x.desc(), ", grad_x ", gx.desc(),
               " must have one shape and dtype");
  if (gx.numel() == 0) return;
  Launch L(gx);
  dispatch_float(gx.dtype(), "clamp_backward", [&]<class T>() {
    using A = compute_t<T>;
    Map2<T, T, T, ClampBwdG<T>> m{ptr<T>(gx), ptr<const T>(gy), ptr<const T>(x), {A(lo), A(hi)}};
    launch_map("clamp_backward", gx.shape(), {&gx.strides(), &gy.strides(), &x.strides()}, m, L);
  });
}

}  // namespace fathom::cuda
