// CUDA 2:4 gradient compression with error feedback (core/ops/compress.h), the kernels behind
// DeepComm's sparse compressor: one thread per group of 4 values, the kept pair chosen from the
// step and the group index exactly as core/cpu/compress.cpp does.
#include "fathom/core/cuda/common.cuh"
#include "fathom/core/ops/compress.h"

namespace fathom::cuda {

namespace {

// kSparse24Pairs (a host constexpr array) as device constants.
__constant__ uint8_t kPairs[6][2] = {{0, 1}, {2, 3}, {0, 2}, {1, 3}, {0, 3}, {1, 2}};
constexpr bool pairs_match() {
  constexpr uint8_t p[6][2] = {{0, 1}, {2, 3}, {0, 2}, {1, 3}, {0, 3}, {1, 2}};
  for (int i = 0; i < 6; ++i)
    if (p[i][0] != kSparse24Pairs[i][0] || p[i][1] != kSparse24Pairs[i][1]) return false;
  return true;
}
static_assert(pairs_match(), "core/cuda/compress.cu: kPairs must equal kSparse24Pairs");

// v[k] for a run-time k without sending v to local memory.
__device__ __forceinline__ float pick(const float (&v)[4], int k) {
  float r = v[0];
#pragma unroll
  for (int q = 1; q < 4; ++q)
    if (q == k) r = v[q];
  return r;
}

template <class P>
__global__ void compress_kernel(const float* g, float* res, P* out, int64_t groups, uint64_t step) {
  int64_t grp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (grp >= groups) return;
  int pair = int((step + uint64_t(grp)) % 6);
  int k0 = kPairs[pair][0], k1 = kPairs[pair][1];
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = g[4 * grp + j] + res[4 * grp + j];
  P s0 = cvt<P>(pick(v, k0)), s1 = cvt<P>(pick(v, k1));
  out[2 * grp] = s0;
  out[2 * grp + 1] = s1;
  // What rounding to the wire format lost stays behind in the residual too.
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (j == k0) v[j] -= float(to_c(s0));
    if (j == k1) v[j] -= float(to_c(s1));
    res[4 * grp + j] = v[j];
  }
}

template <class P>
__global__ void decompress_kernel(const P* in, float* g, int64_t groups, uint64_t step) {
  int64_t grp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (grp >= groups) return;
  int pair = int((step + uint64_t(grp)) % 6);
  int k0 = kPairs[pair][0], k1 = kPairs[pair][1];
  float a = float(to_c(in[2 * grp])), b = float(to_c(in[2 * grp + 1]));
#pragma unroll
  for (int j = 0; j < 4; ++j) g[4 * grp + j] = j == k0 ? a : j == k1 ? b : 0.0f;
}

void check(const char* op, const Tensor& grad, const Tensor& payload) {
  FATHOM_CHECK(grad.dtype() == DType::f32 && grad.is_contiguous() && grad.numel() % 4 == 0 &&
                   payload.is_contiguous() && payload.numel() * 2 == grad.numel() &&
                   (payload.dtype() == DType::f32 || payload.dtype() == DType::bf16),
               op, ": gradient ", grad.desc(), " and payload ", payload.desc(),
               " must be contiguous f32 [n] and f32|bf16 [n/2]");
}

template <class F>
void with_payload(DType t, F&& f) {
  if (t == DType::bf16) f.template operator()<__nv_bfloat16>();
  else f.template operator()<float>();
}

}  // namespace

void sparse24_compress(const Tensor& grad, const Tensor& residual, const Tensor& payload,
                       uint64_t step) {
  check("sparse24_compress", grad, payload);
  FATHOM_CHECK(residual.dtype() == DType::f32 && residual.is_contiguous() &&
                   residual.numel() == grad.numel(),
               "sparse24_compress: residual ", residual.desc(), " must match ", grad.desc());
  int64_t groups = grad.numel() / 4;
  if (groups == 0) return;
  Launch L(grad);
  with_payload(payload.dtype(), [&]<class P>() {
    compress_kernel<P><<<unsigned(ceil_div(groups, 256)), 256, 0, L.stream>>>(
        ptr<const float>(grad), ptr<float>(residual), ptr<P>(payload), groups, step);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void sparse24_decompress(const Tensor& payload, const Tensor& grad, uint64_t step) {
  check("sparse24_decompress", grad, payload);
  int64_t groups = grad.numel() / 4;
  if (groups == 0) return;
  Launch L(grad);
  with_payload(payload.dtype(), [&]<class P>() {
    decompress_kernel<P><<<unsigned(ceil_div(groups, 256)), 256, 0, L.stream>>>(
        ptr<const P>(payload), ptr<float>(grad), groups, step);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fathom::cuda
