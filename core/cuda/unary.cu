// CUDA unary ops and their backward, float dtypes only (clamp, at the end, takes any non-bool
// dtype). Formulas mirror
// core/cpu/elementwise.cpp (the reference): GELU is the tanh approximation, rsqrt is 1/sqrt
// (not the approximate rsqrtf), the derivative of each op is taken in x or y as the CPU does.
#include "fathom/core/cuda/loops.cuh"

namespace fathom::cuda {

// ---- math ----

constexpr double kSqrt2OverPi = 0.7978845608028654;

template <class A>
__device__ __forceinline__ A gelu_tanh(A x) {
  A inner = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  return A(0.5) * x * (A(1) + d_tanh(inner));
}

template <class A>
__device__ __forceinline__ A gelu_tanh_grad(A x) {
  A inner = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  A th = d_tanh(inner);
  A dinner = A(kSqrt2OverPi) * (A(1) + A(3 * 0.044715) * x * x);
  return A(0.5) * (A(1) + th) + A(0.5) * x * (A(1) - th * th) * dinner;
}

// Forward functors: A -> A in the compute type.
#define FATHOM_UNARY(Name, expr)                                           \
  struct Name {                                                            \
    template <class A>                                                     \
    __device__ __forceinline__ A operator()(A v) const { return expr; }    \
  };
FATHOM_UNARY(NegF, -v)
FATHOM_UNARY(ExpF, d_exp(v))
FATHOM_UNARY(LogF, d_log(v))
FATHOM_UNARY(TanhF, d_tanh(v))
FATHOM_UNARY(ReluF, v > A(0) ? v : A(0))
FATHOM_UNARY(GeluF, gelu_tanh(v))
FATHOM_UNARY(SigmoidF, A(1) / (A(1) + d_exp(-v)))
FATHOM_UNARY(SqrtF, d_sqrt(v))
FATHOM_UNARY(RsqrtF, A(1) / d_sqrt(v))
FATHOM_UNARY(AbsF, d_abs(v))
FATHOM_UNARY(SquareF, v * v)
FATHOM_UNARY(SinF, d_sin(v))
FATHOM_UNARY(CosF, d_cos(v))
FATHOM_UNARY(Log1pF, d_log1p(v))
FATHOM_UNARY(Expm1F, d_expm1(v))
FATHOM_UNARY(SignF, A((v > A(0)) - (v < A(0))))
#undef FATHOM_UNARY

// Backward functors: (grad_y, s) -> grad_x, s being x or y (see unary_backward).
#define FATHOM_UNARY_BWD(Name, expr)                                          \
  struct Name {                                                               \
    template <class A>                                                        \
    __device__ __forceinline__ A operator()(A g, A v) const { return expr; }  \
  };
FATHOM_UNARY_BWD(NegB, -g)
FATHOM_UNARY_BWD(ExpB, g * v)
FATHOM_UNARY_BWD(LogB, g / v)
FATHOM_UNARY_BWD(TanhB, g * (A(1) - v * v))
FATHOM_UNARY_BWD(ReluB, v > A(0) ? g : A(0))
FATHOM_UNARY_BWD(GeluB, g * gelu_tanh_grad(v))
FATHOM_UNARY_BWD(SigmoidB, g * v * (A(1) - v))
FATHOM_UNARY_BWD(SqrtB, g / (A(2) * v))
FATHOM_UNARY_BWD(RsqrtB, A(-0.5) * g * v * v * v)
FATHOM_UNARY_BWD(AbsB, v > A(0) ? g : v < A(0) ? -g : A(0))
FATHOM_UNARY_BWD(SquareB, A(2) * g * v)
FATHOM_UNARY_BWD(SinB, g * d_cos(v))
FATHOM_UNARY_BWD(CosB, -g * d_sin(v))
FATHOM_UNARY_BWD(Log1pB, g / (A(1) + v))
FATHOM_UNARY_BWD(Expm1B, g * (v + A(1)))
FATHOM_UNARY_BWD(SignB, A(0))
#undef FATHOM_UNARY_BWD

template <class T, class F>
struct UnaryG {
  F f;
  __device__ __forceinline__ T operator()(T x) const {
    return cvt<T>(f(compute_t<T>(to_c(x))));
  }
};

template <class T, class F>
struct UnaryBwdG {
  F f;
  __device__ __forceinline__ T operator()(T g, T v) const {
    return cvt<T>(f(compute_t<T>(to_c(g)), compute_t<T>(to_c(v))));
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
      case UnaryOp::neg: return run_unary<T, NegF>(x, out, L);
      case UnaryOp::exp: return run_unary<T, ExpF>(x, out, L);
      case UnaryOp::log: return run_unary<T, LogF>(x, out, L);
      case UnaryOp::tanh: return run_unary<T, TanhF>(x, out, L);
      case UnaryOp::relu: return run_unary<T, ReluF>(x, out, L);
      case UnaryOp::gelu: return run_unary<T, GeluF>(x, out, L);
      case UnaryOp::sigmoid: return run_unary<T, SigmoidF>(x, out, L);
      case UnaryOp::sqrt: return run_unary<T, SqrtF>(x, out, L);
      case UnaryOp::rsqrt: return run_unary<T, RsqrtF>(x, out, L);
      case UnaryOp::abs: return run_unary<T, AbsF>(x, out, L);
      case UnaryOp::square: return run_unary<T, SquareF>(x, out, L);
      case UnaryOp::sin: return run_unary<T, SinF>(x, out, L);
      case UnaryOp::cos: return run_unary<T, CosF>(x, out, L);
      case UnaryOp::log1p: return run_unary<T, Log1pF>(x, out, L);
      case UnaryOp::expm1: return run_unary<T, Expm1F>(x, out, L);
      case UnaryOp::sign: return run_unary<T, SignF>(x, out, L);
    }
  });
}

template <class T, class F>
static void run_bwd(const Tensor& gy, const Tensor& s, const Tensor& gx, const Launch& L) {
  Map2<T, T, T, UnaryBwdG<T, F>> m{ptr<T>(gx), ptr<const T>(gy), ptr<const T>(s), {}};
  launch_map("unary_backward", gx.shape(), {&gx.strides(), &gy.strides(), &s.strides()}, m, L);
}

void unary_backward(UnaryOp op, const Tensor& gy, const Tensor& x, const Tensor& y,
                    const Tensor& gx) {
  // Which saved tensor each derivative reads: the same choice as the CPU.
  auto need = [&](const Tensor& t, const char* which) -> const Tensor& {
    FATHOM_CHECK(t.defined() && t.shape() == gx.shape() && t.dtype() == gx.dtype(),
                 op_name(op), "_backward: needs ", which, " of the grad's shape and dtype ",
                 gx.desc(), ", got ", t.desc());
    return t;
  };
  FATHOM_CHECK(gy.shape() == gx.shape() && gy.dtype() == gx.dtype(), op_name(op),
               "_backward: grad_y ", gy.desc(), " does not match grad_x ", gx.desc());
  if (gx.numel() == 0) return;
  Launch L(gx);
  dispatch_float(gx.dtype(), op_name(op), [&]<class T>() {
    switch (op) {
      case UnaryOp::neg: return run_bwd<T, NegB>(gy, gy, gx, L);
      case UnaryOp::exp: return run_bwd<T, ExpB>(gy, need(y, "y"), gx, L);
      case UnaryOp::log: return run_bwd<T, LogB>(gy, need(x, "x"), gx, L);
      case UnaryOp::tanh: return run_bwd<T, TanhB>(gy, need(y, "y"), gx, L);
      case UnaryOp::relu: return run_bwd<T, ReluB>(gy, need(x, "x"), gx, L);
      case UnaryOp::gelu: return run_bwd<T, GeluB>(gy, need(x, "x"), gx, L);
      case UnaryOp::sigmoid: return run_bwd<T, SigmoidB>(gy, need(y, "y"), gx, L);
      case UnaryOp::sqrt: return run_bwd<T, SqrtB>(gy, need(y, "y"), gx, L);
      case UnaryOp::rsqrt: return run_bwd<T, RsqrtB>(gy, need(y, "y"), gx, L);
      case UnaryOp::abs: return run_bwd<T, AbsB>(gy, need(x, "x"), gx, L);
      case UnaryOp::square: return run_bwd<T, SquareB>(gy, need(x, "x"), gx, L);
      case UnaryOp::sin: return run_bwd<T, SinB>(gy, need(x, "x"), gx, L);
      case UnaryOp::cos: return run_bwd<T, CosB>(gy, need(x, "x"), gx, L);
      case UnaryOp::log1p: return run_bwd<T, Log1pB>(gy, need(x, "x"), gx, L);
      case UnaryOp::expm1: return run_bwd<T, Expm1B>(gy, need(y, "y"), gx, L);
      case UnaryOp::sign: return run_bwd<T, SignB>(gy, gy, gx, L);
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
