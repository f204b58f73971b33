// CUDA uniform and normal draws from Philox-4x32-10 (core/random.h), the same numbers as the CPU
// (core/cpu/random.cpp) for the same Generator state: element i takes lane i % 4 of counter
// block state.offset + i / 4, one thread per block of 4 elements.
//
// To match the CPU bit for bit where the math allows, the final affine step is written with
// explicit round-to-nearest multiply and add (__fmul_rn/__fadd_rn), which nvcc never fuses
// into an FMA (the CPU build has no FMA either). Uniform draws are then identical; normal draws
// go through logf/sinf/cosf, whose last bit can differ from glibc's: equal to ~1e-6 relative.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// v = low + (high - low) * u, kept below high (rounding can land on it in low precision).
template <class T>
__global__ void uniform_kernel(T* out, int64_t n, PhiloxState s, compute_t<T> low,
                               compute_t<T> range, compute_t<T> high) {
  using A = compute_t<T>;
  int64_t blk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk * 4 >= n) return;
  Philox4 r = philox(s.seed, s.stream, s.offset + uint64_t(blk));
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    int64_t i = blk * 4 + l;
    if (i < n) {
      A v = add_rn(low, mul_rn(range, A(u01(r.v[l]))));
      out[i] = cvt<T>(v < high ? v : low);
    }
  }
}

// Box-Muller on lane pairs (0,1) and (2,3): both outputs of a pair are used.
template <class T>
__global__ void normal_kernel(T* out, int64_t n, PhiloxState s, compute_t<T> mean,
                              compute_t<T> std) {
  using A = compute_t<T>;
  int64_t blk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk * 4 >= n) return;
  Philox4 r = philox(s.seed, s.stream, s.offset + uint64_t(blk));
#pragma unroll
  for (int p = 0; p < 4; p += 2) {
    float u1 = (float(r.v[p] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
    float u2 = u01(r.v[p + 1]);
    float rad = sqrtf(-2.0f * logf(u1)), th = 6.2831853071795864f * u2;
    float z[2] = {rad * cosf(th), rad * sinf(th)};
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      int64_t i = blk * 4 + p + l;
      if (i < n) out[i] = cvt<T>(add_rn(mean, mul_rn(std, A(z[l]))));
    }
  }
}

void check_out(const char* op, const Tensor& out) {
  FATHOM_CHECK(out.is_contiguous() && is_floating(out.dtype()), op, ": out ", out.desc(),
               " must be a contiguous floating-point tensor");
}

}  // namespace

void uniform(const Tensor& out, PhiloxState state, double low, double high) {
  check_out("uniform", out);
  int64_t n = out.numel();
  if (n == 0) return;
  Launch L(out);
  dispatch_float(out.dtype(), "uniform", [&]<class T>() {
    using A = compute_t<T>;
    // The CPU's A(low) + A(high - low) * u: the range is formed in f64, then converted.
    uniform_kernel<T><<<unsigned(ceil_div(ceil_div(n, 4), 256)), 256, 0, L.stream>>>(
        ptr<T>(out), n, state, A(low), A(high - low), A(high));
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void normal(const Tensor& out, PhiloxState state, double mean, double std) {
  check_out("normal", out);
  int64_t n = out.numel();
  if (n == 0) return;
  Launch L(out);
  dispatch_float(out.dtype(), "normal", [&]<class T>() {
    using A = compute_t<T>;
    normal_kernel<T><<<unsigned(ceil_div(ceil_div(n, 4), 256)), 256, 0, L.stream>>>(
        ptr<T>(out), n, state, A(mean), A(std));
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fathom::cuda
