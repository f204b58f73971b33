#pragma once
// Device-side building blocks shared by the CUDA kernels (core/cuda/*.cu): the device type of
// each DType and dtype dispatch, conversions that round exactly like the CPU kernels, math
// overloads, 16-byte vectors, warp/block reductions and row loops. Kernels compute half types
// in f32 (as the CPU does) and round once on store.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "fathom/core/backend.h"
#include "fathom/core/cuda/runtime.h"

namespace fathom::cuda {

// ---- dtype dispatch: f.template operator()<T>() with T the type kernels see on the device ----

template <class F>
decltype(auto) dispatch_all(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: return f.template operator()<__nv_bfloat16>();
    case DType::f16: return f.template operator()<__half>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::i64: return f.template operator()<int64_t>();
    case DType::u8: return f.template operator()<uint8_t>();
    case DType::boolean: return f.template operator()<bool>();
  }
  fathom::detail::fail(op, ": unsupported dtype");
}

template <class F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: return f.template operator()<__nv_bfloat16>();
    case DType::f16: return f.template operator()<__half>();
    default: fathom::detail::fail(op, ": expected a floating-point tensor, got ", dtype_name(dt));
  }
}

// The DType of a device element type.
template <class T>
constexpr DType dtype_of_device() {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return DType::bf16;
  else if constexpr (std::is_same_v<T, __half>) return DType::f16;
  else return dtype_of<T>::value;
}

// What a kernel computes in: f32 for the half types, the type itself otherwise.
template <class T> struct Compute { using type = T; };
template <> struct Compute<__nv_bfloat16> { using type = float; };
template <> struct Compute<__half> { using type = float; };
template <class T> using compute_t = typename Compute<T>::type;

template <class T>
__device__ __forceinline__ T to_c(T x) { return x; }
__device__ __forceinline__ float to_c(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_c(__half x) { return __half2float(x); }

// D from a computed value, rounding to nearest even like the CPU's bf16/f16 constructors
// (which also go through f32 first, so f64 -> bf16 rounds twice on both devices).
template <class D> struct Conv {
  template <class A> __device__ __forceinline__ static D from(A v) { return static_cast<D>(v); }
};
// Floats to u8 go through i32, as x86 does for the CPU kernels (cvttss2si, then the low byte):
// a negative value wraps instead of saturating to 0 as a direct cvt.rzi.u8 would.
template <> struct Conv<uint8_t> {
  template <class A> __device__ __forceinline__ static uint8_t from(A v) {
    if constexpr (std::is_floating_point_v<A>) return static_cast<uint8_t>(static_cast<int32_t>(v));
    else return static_cast<uint8_t>(v);
  }
};
template <> struct Conv<bool> {
  template <class A> __device__ __forceinline__ static bool from(A v) { return v != A(0); }
};
template <> struct Conv<__nv_bfloat16> {
  template <class A> __device__ __forceinline__ static __nv_bfloat16 from(A v) {
    return __float2bfloat16_rn(float(v));
  }
};
template <> struct Conv<__half> {
  template <class A> __device__ __forceinline__ static __half from(A v) {
    return __float2half_rn(float(v));
  }
};
template <class D, class A>
__device__ __forceinline__ D cvt(A v) { return Conv<D>::from(v); }

// A double converted on the host exactly like the CPU's static_cast<T>(acc_t<T>(value)).
template <class T>
T host_value(double v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat16_raw r;
    r.x = fathom::bf16(float(v)).bits;
    return __nv_bfloat16(r);
  } else if constexpr (std::is_same_v<T, __half>) {
    __half_raw r;
    r.x = fathom::f16(float(v)).bits;
    return __half(r);
  } else {
    return static_cast<T>(v);
  }
}

// ---- math in the compute type ----
__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return fabs(x); }
__device__ __forceinline__ float d_sin(float x) { return sinf(x); }
__device__ __forceinline__ double d_sin(double x) { return sin(x); }
__device__ __forceinline__ float d_cos(float x) { return cosf(x); }
__device__ __forceinline__ double d_cos(double x) { return cos(x); }
__device__ __forceinline__ float d_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double d_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float d_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double d_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float d_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double d_pow(double a, double b) { return pow(a, b); }
template <class A>
__device__ __forceinline__ A d_pow(A a, A b) {  // integers: as the CPU, through f64 and llround
  return A(llround(pow(double(a), double(b))));
}
template <class A> __device__ __forceinline__ A d_inf() { return A(__int_as_float(0x7f800000)); }
template <> __device__ __forceinline__ double d_inf<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

// ---- 16-byte vectors ----
template <class T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T v[N];
};
template <class T> inline constexpr int kVec16 = sizeof(T) >= 16 ? 1 : int(16 / sizeof(T));

inline bool aligned_to(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Row sums (softmax, layer norm, cross-entropy): f64 for f32 and f64 rows, f32 for the half
// types, as the CPU's float_acc_t.
template <class T>
using row_acc_t = std::conditional_t<std::is_same_v<compute_t<T>, double> ||
                                         std::is_same_v<T, float>,
                                     double, float>;

template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}
template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// ---- launch context: the tensor's device made current, and its compute stream ----
inline int checked_device(const Tensor& t) {
  FATHOM_CHECK(t.is_cuda(), "CUDA kernel: got ", t.desc(), ", a tensor that is not on a GPU");
  check_device(t.device().index, "CUDA kernel");
  return t.device().index;
}
struct Launch {
  int device;
  DeviceGuard guard;
  cudaStream_t stream;
  explicit Launch(const Tensor& t)
      : device(checked_device(t)), guard(device), stream(current_stream(device)) {}
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int pow2_at_least(int64_t n) {
  int p = 1;
  while (p < n && p < (1 << 30)) p <<= 1;
  return p;
}

// ---- reductions ----
// An Op has identity() and combine(a, b); the state type is what it combines.

template <class S>
__device__ __forceinline__ S shfl_xor(S v, int mask) {
  return __shfl_xor_sync(0xffffffffu, v, mask);
}

template <class S, class Op>
__device__ __forceinline__ S warp_allreduce(S v, const Op& op) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = op.combine(v, shfl_xor(v, m));
  return v;
}

// All threads of a row group get the combined value. A group is the threadIdx.x range: one warp
// (blockDim.x == 32, then blockDim.y rows per block and no barrier is used, so warps of rows
// past the end may leave early) or the whole block (blockDim.x a multiple of 32 up to 1024,
// blockDim.y == 1). smem: 32 states of block shared memory.
template <class S, class Op>
__device__ __forceinline__ S group_allreduce(S v, const Op& op, S* smem) {
  v = warp_allreduce(v, op);
  if (blockDim.x <= 32) return v;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  S r = lane < nw ? smem[lane] : op.identity();
  return warp_allreduce(r, op);
}

template <class A> struct SumOp {
  __device__ __forceinline__ A identity() const { return A(0); }
  __device__ __forceinline__ A combine(A a, A b) const { return a + b; }
};
// NaN-propagating, like the CPU's maximum/minimum.
template <class A> struct MaxOp {
  __device__ __forceinline__ A identity() const;
  __device__ __forceinline__ A combine(A a, A b) const { return (a > b || a != a) ? a : b; }
};
template <class A> struct MinOp {
  __device__ __forceinline__ A identity() const;
  __device__ __forceinline__ A combine(A a, A b) const { return (a < b || a != a) ? a : b; }
};
template <> __device__ __forceinline__ float MaxOp<float>::identity() const { return -d_inf<float>(); }
template <> __device__ __forceinline__ double MaxOp<double>::identity() const { return -d_inf<double>(); }
template <> __device__ __forceinline__ int64_t MaxOp<int64_t>::identity() const { return INT64_MIN; }
template <> __device__ __forceinline__ float MinOp<float>::identity() const { return d_inf<float>(); }
template <> __device__ __forceinline__ double MinOp<double>::identity() const { return d_inf<double>(); }
template <> __device__ __forceinline__ int64_t MinOp<int64_t>::identity() const { return INT64_MAX; }

// Running (max, sum of exp(x - max)) of a row, merged without a second pass over the data.
// The max and the exponentials are in A (the compute type), the sum in S (wider for f32 rows,
// as the CPU's float_acc_t).
template <class A, class S> struct MaxSum {
  A m;
  S s;
};
template <class A, class S>
__device__ __forceinline__ MaxSum<A, S> shfl_xor(MaxSum<A, S> v, int mask) {
  return {__shfl_xor_sync(0xffffffffu, v.m, mask), __shfl_xor_sync(0xffffffffu, v.s, mask)};
}
template <class A, class S> struct MaxSumOp {
  __device__ __forceinline__ MaxSum<A, S> identity() const { return {-d_inf<A>(), S(0)}; }
  __device__ __forceinline__ MaxSum<A, S> combine(MaxSum<A, S> a, MaxSum<A, S> b) const {
    A m = a.m > b.m ? a.m : b.m;
    if (m == -d_inf<A>()) return {m, a.s + b.s};  // both empty (or all -inf): no rescaling
    return {m, a.s * S(d_exp(a.m - m)) + b.s * S(d_exp(b.m - m))};
  }
  __device__ __forceinline__ MaxSum<A, S> add(MaxSum<A, S> a, A x) const {
    if (x > a.m) return {x, a.s * S(d_exp(a.m - x)) + S(1)};
    if (a.m == -d_inf<A>()) return a;  // x is -inf too: exp(x - m) would be exp(NaN)
    return {a.m, a.s + S(d_exp(x - a.m))};
  }
};

// Two sums reduced together (one barrier for both).
template <class S> struct Sum2 {
  S a, b;
};
template <class S>
__device__ __forceinline__ Sum2<S> shfl_xor(Sum2<S> v, int mask) {
  return {__shfl_xor_sync(0xffffffffu, v.a, mask), __shfl_xor_sync(0xffffffffu, v.b, mask)};
}
template <class S> struct Sum2Op {
  __device__ __forceinline__ Sum2<S> identity() const { return {S(0), S(0)}; }
  __device__ __forceinline__ Sum2<S> combine(Sum2<S> x, Sum2<S> y) const {
    return {x.a + y.a, x.b + y.b};
  }
};

// ---- row loops: the threads of a group walk one row, 16 bytes per load where aligned ----

template <int V, class F, class... P>
__device__ __forceinline__ void row_visit_vec(int64_t b, F& f, AlignedVec<P, V>... in) {
#pragma unroll
  for (int k = 0; k < V; ++k) f(b + k, in.v[k]...);
}

// f(i, p0[i], in[i]...) for the elements i of a row [0, n) that thread tid of nthreads owns,
// 16 bytes per load when every pointer has the same offset within 16 bytes (a scalar head
// reaches the boundary, a scalar tail ends the row), else element by element.
template <class F, class P0, class... P>
__device__ __forceinline__ void row_for_each(int64_t n, int tid, int nthreads, F&& f,
                                             const P0* p0, const P*... in) {
  static_assert(((sizeof(P) == sizeof(P0)) && ...), "row_for_each: rows of one element size");
  constexpr int V = kVec16<P0>;
  uintptr_t mis = reinterpret_cast<uintptr_t>(p0) & 15;
  bool same = (((reinterpret_cast<uintptr_t>(in) & 15) == mis) && ...);
  int64_t head = same ? int64_t(((16 - mis) & 15) / sizeof(P0)) : n;
  if (head > n) head = n;
  for (int64_t i = tid; i < head; i += nthreads) f(i, p0[i], in[i]...);
  int64_t nv = (n - head) / V;
  for (int64_t j = tid; j < nv; j += nthreads) {
    int64_t b = head + j * V;
    row_visit_vec<V>(b, f, *reinterpret_cast<const AlignedVec<P0, V>*>(p0 + b),
                     *reinterpret_cast<const AlignedVec<P, V>*>(in + b)...);
  }
  for (int64_t i = head + nv * V + tid; i < n; i += nthreads) f(i, p0[i], in[i]...);
}

template <class T, int V, class F, class... P>
__device__ __forceinline__ void row_write_vec(T* out, int64_t b, F& f, AlignedVec<P, V>... in) {
  AlignedVec<T, V> r;
#pragma unroll
  for (int k = 0; k < V; ++k) r.v[k] = f(b + k, in.v[k]...);
  *reinterpret_cast<AlignedVec<T, V>*>(out + b) = r;
}

// out[i] = f(i, in[i]...) over row [0, n): vectorized when every pointer has the same offset
// within 16 bytes (true for rows of tensors with the same shape and aligned bases).
template <class T, class F, class... P>
__device__ __forceinline__ void row_write(T* out, int64_t n, int tid, int nthreads, F f,
                                          const P*... in) {
  static_assert(((sizeof(P) == sizeof(T)) && ...), "row_write: inputs must match the output size");
  constexpr int V = kVec16<T>;
  uintptr_t mis = reinterpret_cast<uintptr_t>(out) & 15;
  bool same = (((reinterpret_cast<uintptr_t>(in) & 15) == mis) && ...);
  int64_t head = same ? int64_t(((16 - mis) & 15) / sizeof(T)) : n;
  if (head > n) head = n;
  for (int64_t i = tid; i < head; i += nthreads) out[i] = f(i, in[i]...);
  int64_t nv = (n - head) / V;
  for (int64_t j = tid; j < nv; j += nthreads) {
    int64_t b = head + j * V;
    row_write_vec<T, V>(out, b, f, *reinterpret_cast<const AlignedVec<P, V>*>(in + b)...);
  }
  for (int64_t i = head + nv * V + tid; i < n; i += nthreads) out[i] = f(i, in[i]...);
}

// Threads per row group for a row of n elements: about one 16-byte vector per thread per pass,
// a warp at least, a block of 1024 at most.
inline int row_threads(int64_t n, size_t elem_size) {
  int64_t per = int64_t(16 / (elem_size > 16 ? 16 : elem_size));
  int t = pow2_at_least(ceil_div(n, per));
  return t < 32 ? 32 : t > 1024 ? 1024 : t;
}

// Launch shape for a row kernel: rows_per_block warps of one row each when the row fits a warp,
// else one block per row.
struct RowLaunch {
  dim3 grid, block;
};
// The row a thread group works on (see group_allreduce), or false past the last row.
__device__ __forceinline__ bool group_row(int64_t rows, int64_t* row) {
  *row = blockDim.y > 1 ? int64_t(blockIdx.x) * blockDim.y + threadIdx.y : int64_t(blockIdx.x);
  return *row < rows;
}

inline RowLaunch row_launch(int64_t rows, int64_t cols, size_t elem_size) {
  int t = row_threads(cols, elem_size);
  int per_block = t == 32 ? 8 : 1;
  int64_t blocks = ceil_div(rows, per_block);
  FATHOM_CHECK(blocks < (int64_t(1) << 31), "CUDA row kernel: ", rows, " rows are too many");
  return {dim3(unsigned(blocks)), dim3(unsigned(t), unsigned(per_block))};
}

}  // namespace fathom::cuda
