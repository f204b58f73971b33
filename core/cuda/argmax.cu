// CUDA argmax over x [outer, r, inner] -> i64 [outer, inner] (reduce.cuh has the engine).
// The first index of the maximum; NaN counts as the maximum (PyTorch's rule, as the CPU).
// The merge is order-free (ties go to the smaller index), so any grouping gives one answer.
#include "fathom/core/cuda/reduce.cuh"

namespace fathom::cuda {

namespace {

template <class A>
struct ArgState {
  A v;
  int64_t i;  // -1: empty
};

template <class A>
__device__ __forceinline__ ArgState<A> shfl_xor(ArgState<A> s, int mask) {
  return {__shfl_xor_sync(0xffffffffu, s.v, mask), __shfl_xor_sync(0xffffffffu, s.i, mask)};
}

template <class T, class A>
struct ArgRed {
  using State = ArgState<A>;
  __device__ __forceinline__ State identity() const { return {A(0), -1}; }
  // Does b beat a?
  __device__ __forceinline__ static bool beats(const State& b, const State& a) {
    if (b.i < 0) return false;
    if (a.i < 0) return true;
    bool bn = b.v != b.v, an = a.v != a.v;
    if (bn || an) return bn && (!an || b.i < a.i);
    return b.v > a.v || (b.v == a.v && b.i < a.i);
  }
  __device__ __forceinline__ State combine(State a, State b) const { return beats(b, a) ? b : a; }
  __device__ __forceinline__ State load(T v, int64_t k) const { return {A(to_c(v)), k}; }
};

template <class A>
struct StoreIndex {
  int64_t* out;
  __device__ __forceinline__ void operator()(int64_t i, ArgState<A> s) const { out[i] = s.i; }
};

}  // namespace

void argmax(const Tensor& x, int64_t outer, int64_t r, int64_t inner, const Tensor& out) {
  FATHOM_CHECK(x.numel() == outer * r * inner && out.numel() == outer * inner &&
                   out.dtype() == DType::i64,
               "argmax: x ", x.desc(), " is not [", outer, ", ", r, ", ", inner, "] or out ",
               out.desc(), " is not i64 [", outer, ", ", inner, "]");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(x.dtype(), "argmax", [&]<class T>() {
    // Integers and bool compare as i64 (shuffles have no 8-bit form).
    using A = std::conditional_t<std::is_floating_point_v<compute_t<T>>, compute_t<T>, int64_t>;
    run_reduce(ptr<const T>(x), outer, r, inner, ArgRed<T, A>{},
               StoreIndex<A>{ptr<int64_t>(out)}, L);
  });
}

}  // namespace fathom::cuda
