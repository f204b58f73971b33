// CUDA sum, mean, max and min over x [outer, r, inner] (reduce.cuh has the engine). The
// accumulators follow the CPU reference (core/cpu/reduce.cpp): f32 and f64 sums in f64, half
// sums in f32, integer and bool sums in i64; max and min propagate NaN.
#include "fathom/core/cuda/reduce.cuh"

namespace fathom::cuda {

namespace {

// Sum accumulator: f64 for f32/f64, f32 for halves, i64 for integers and bool.
template <class T>
using sum_acc_t = std::conditional_t<std::is_floating_point_v<compute_t<T>>,
                                     std::conditional_t<std::is_same_v<compute_t<T>, float> &&
                                                            !std::is_same_v<T, float>,
                                                        float, double>,
                                     int64_t>;
// Max/min state: the compute type for floats, i64 for integers and bool (shuffles need it).
template <class T>
using ext_acc_t = std::conditional_t<std::is_floating_point_v<compute_t<T>>, compute_t<T>, int64_t>;

template <class T, class S>
struct SumRed {
  using State = S;
  __device__ __forceinline__ S identity() const { return S(0); }
  __device__ __forceinline__ S combine(S a, S b) const { return a + b; }
  __device__ __forceinline__ S load(T v, int64_t) const { return S(to_c(v)); }
};

template <class T, class S>
struct SumSqRed {
  using State = S;
  __device__ __forceinline__ S identity() const { return S(0); }
  __device__ __forceinline__ S combine(S a, S b) const { return a + b; }
  __device__ __forceinline__ S load(T v, int64_t) const {
    S x = S(to_c(v));
    return x * x;
  }
};

template <class T, class A, bool kMax>
struct ExtRed {
  using State = A;
  __device__ __forceinline__ A identity() const {
    return kMax ? MaxOp<A>().identity() : MinOp<A>().identity();
  }
  // NaN wins: once a state is NaN no comparison replaces it.
  __device__ __forceinline__ A combine(A a, A b) const {
    return kMax ? MaxOp<A>().combine(a, b) : MinOp<A>().combine(a, b);
  }
  __device__ __forceinline__ A load(T v, int64_t) const { return A(to_c(v)); }
};

template <class S, class O>
struct StoreSum {
  O* out;
  S divisor;  // r for a mean, 1 for a sum
  __device__ __forceinline__ void operator()(int64_t i, S a) const { out[i] = cvt<O>(a / divisor); }
};

template <class S, class O>
struct StoreVal {
  O* out;
  __device__ __forceinline__ void operator()(int64_t i, S a) const { out[i] = cvt<O>(a); }
};

}  // namespace

void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner,
            const Tensor& out) {
  static const char* names[] = {"sum", "mean", "amax", "amin"};
  const char* name = names[int(op)];
  FATHOM_CHECK(x.numel() == outer * r * inner && out.numel() == outer * inner, name, ": x ",
               x.desc(), " is not [", outer, ", ", r, ", ", inner, "] or out ", out.desc(),
               " is not [", outer, ", ", inner, "]");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(x.dtype(), name, [&]<class T>() {
    const T* xp = ptr<const T>(x);
    using S = sum_acc_t<T>;
    using A = ext_acc_t<T>;
    constexpr bool kInt = std::is_integral_v<S>;
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean: {
        using O = std::conditional_t<kInt, int64_t, T>;
        FATHOM_CHECK(!kInt || op == ReduceOp::sum, "mean: integer input ", x.desc(),
                     " reached the CUDA kernel; the dispatch point rejects it");
        FATHOM_CHECK(out.dtype() == dtype_of_device<O>(), name, ": out ", out.desc(),
                     " should be ", dtype_name(dtype_of_device<O>()));
        S div = op == ReduceOp::mean ? S(r) : S(1);
        return run_reduce(xp, outer, r, inner, SumRed<T, S>{}, StoreSum<S, O>{ptr<O>(out), div}, L);
      }
      case ReduceOp::max:
      case ReduceOp::min:
        FATHOM_CHECK(out.dtype() == x.dtype(), name, ": out ", out.desc(), " should be ",
                     dtype_name(x.dtype()));
        if (op == ReduceOp::max)
          return run_reduce(xp, outer, r, inner, ExtRed<T, A, true>{}, StoreVal<A, T>{ptr<T>(out)}, L);
        return run_reduce(xp, outer, r, inner, ExtRed<T, A, false>{}, StoreVal<A, T>{ptr<T>(out)}, L);
    }
  });
}

void sum_squares(const std::vector<Tensor>& xs, const Tensor& out) {
  Launch L(out);
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].numel() == 0) continue;  // out was zero-filled by the dispatch point
    dispatch_float(xs[i].dtype(), "sum_squares", [&]<class T>() {
      using S = sum_acc_t<T>;  // the sum's own accumulator: f64 for f32/f64, f32 for halves
      run_reduce(ptr<const T>(xs[i]), 1, xs[i].numel(), 1, SumSqRed<T, S>{},
                 StoreVal<S, double>{ptr<double>(out) + i}, L);
    });
  }
}

}  // namespace fathom::cuda
