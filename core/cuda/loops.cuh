#pragma once
// The elementwise engine behind copy, fill, where, unary and binary ops (core/cuda/*.cu).
//
// An op is a Map functor over up to four operands (operand 0 is the output). launch_map()
// collapses the dims the way core/cpu/loops.h for_each_row does (drops size-1 dims, merges
// dims contiguous for every operand) and picks one of two kernels:
//  - contig_kernel when everything collapses to one dim with the output dense and every input
//    dense or a broadcast scalar (stride 0), and the pointers allow it: 16-byte vector loads and
//    stores (4 x f32, 8 x bf16, 16 x bool), a grid-stride loop, a scalar tail;
//  - strided_kernel otherwise: one element per thread, its offsets from the linear index by
//    multiply-shift division (IntDivider) over up to kMaxDims collapsed dims. Index math is
//    32-bit: a bigger iteration space is first cut into pieces of at most 2^31 - 1 elements
//    along its outer dims (as PyTorch's with_32bit_indexing), each its own launch.
#include <algorithm>
#include <array>
#include <climits>

#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

constexpr int kMaxDims = 12;
constexpr int kMapThreads = 256;

// n / d for n < 2^31 by a multiply-high and a shift (Granlund-Montgomery), exact for d >= 1.
struct IntDivider {
  uint32_t divisor = 1, magic = 1, shift = 0;
  IntDivider() = default;
  explicit IntDivider(uint32_t d) : divisor(d) {
    for (shift = 0; shift < 32; ++shift)
      if ((uint64_t(1) << shift) >= d) break;
    uint64_t m = ((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1;
    magic = uint32_t(m);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
};

// Element offsets of N operands at a linear index. Dims innermost first.
template <int N>
struct OffsetCalc {
  int nd = 0;
  IntDivider size[kMaxDims];
  int64_t stride[kMaxDims][N];
  int64_t base[N];
  __device__ __forceinline__ void get(uint32_t linear, int64_t* off) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = base[k];
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == nd) break;
      uint32_t q = size[d].div(linear);
      int64_t idx = int64_t(linear - q * size[d].divisor);
      linear = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * stride[d][k];
    }
  }
};

constexpr size_t max_size(std::initializer_list<size_t> l) {
  size_t m = 0;
  for (size_t s : l) m = s > m ? s : m;
  return m;
}

// ---- Map functors: out = g(inputs...). g takes the stored input values and returns O. ----
// Each has: kArity, kVec, operator()(offsets) for the strided kernel, one(i) and vec(i) for the
// contiguous one, s[k] (input k is a broadcast scalar there) and host aligned().

template <class O, class G>
struct Map0 {
  static constexpr int kArity = 1;
  static constexpr int kVec = kVec16<O>;
  O* out;
  G g;
  bool s[1] = {false};
  __device__ __forceinline__ void operator()(const int64_t* off) const { out[off[0]] = g(); }
  __device__ __forceinline__ void one(int64_t i) const { out[i] = g(); }
  __device__ __forceinline__ void vec(int64_t i) const {
    AlignedVec<O, kVec> r;
#pragma unroll
    for (int k = 0; k < kVec; ++k) r.v[k] = g();
    *reinterpret_cast<AlignedVec<O, kVec>*>(out + i) = r;
  }
  bool aligned() const { return aligned_to(out, sizeof(O) * kVec); }
};

template <class T, int V>
__device__ __forceinline__ AlignedVec<T, V> load_vec(const T* p, int64_t i, bool scalar) {
  AlignedVec<T, V> r;
  if (scalar) {
    T x = p[0];
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = x;
  } else {
    r = *reinterpret_cast<const AlignedVec<T, V>*>(p + i);
  }
  return r;
}

template <class O, class I0, class G>
struct Map1 {
  static constexpr int kArity = 2;
  static constexpr int kVec = int(16 / max_size({sizeof(O), sizeof(I0)}));
  O* out;
  const I0* in0;
  G g;
  bool s[1] = {false};
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    out[off[0]] = g(in0[off[1]]);
  }
  __device__ __forceinline__ void one(int64_t i) const { out[i] = g(in0[s[0] ? 0 : i]); }
  __device__ __forceinline__ void vec(int64_t i) const {
    auto a = load_vec<I0, kVec>(in0, i, s[0]);
    AlignedVec<O, kVec> r;
#pragma unroll
    for (int k = 0; k < kVec; ++k) r.v[k] = g(a.v[k]);
    *reinterpret_cast<AlignedVec<O, kVec>*>(out + i) = r;
  }
  bool aligned() const {
    return aligned_to(out, sizeof(O) * kVec) && (s[0] || aligned_to(in0, sizeof(I0) * kVec));
  }
};

template <class O, class I0, class I1, class G>
struct Map2 {
  static constexpr int kArity = 3;
  static constexpr int kVec = int(16 / max_size({sizeof(O), sizeof(I0), sizeof(I1)}));
  O* out;
  const I0* in0;
  const I1* in1;
  G g;
  bool s[2] = {false, false};
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    out[off[0]] = g(in0[off[1]], in1[off[2]]);
  }
  __device__ __forceinline__ void one(int64_t i) const {
    out[i] = g(in0[s[0] ? 0 : i], in1[s[1] ? 0 : i]);
  }
  __device__ __forceinline__ void vec(int64_t i) const {
    auto a = load_vec<I0, kVec>(in0, i, s[0]);
    auto b = load_vec<I1, kVec>(in1, i, s[1]);
    AlignedVec<O, kVec> r;
#pragma unroll
    for (int k = 0; k < kVec; ++k) r.v[k] = g(a.v[k], b.v[k]);
    *reinterpret_cast<AlignedVec<O, kVec>*>(out + i) = r;
  }
  bool aligned() const {
    return aligned_to(out, sizeof(O) * kVec) && (s[0] || aligned_to(in0, sizeof(I0) * kVec)) &&
           (s[1] || aligned_to(in1, sizeof(I1) * kVec));
  }
};

template <class O, class I0, class I1, class I2, class G>
struct Map3 {
  static constexpr int kArity = 4;
  static constexpr int kVec =
      int(16 / max_size({sizeof(O), sizeof(I0), sizeof(I1), sizeof(I2)}));
  O* out;
  const I0* in0;
  const I1* in1;
  const I2* in2;
  G g;
  bool s[3] = {false, false, false};
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    out[off[0]] = g(in0[off[1]], in1[off[2]], in2[off[3]]);
  }
  __device__ __forceinline__ void one(int64_t i) const {
    out[i] = g(in0[s[0] ? 0 : i], in1[s[1] ? 0 : i], in2[s[2] ? 0 : i]);
  }
  __device__ __forceinline__ void vec(int64_t i) const {
    auto a = load_vec<I0, kVec>(in0, i, s[0]);
    auto b = load_vec<I1, kVec>(in1, i, s[1]);
    auto c = load_vec<I2, kVec>(in2, i, s[2]);
    AlignedVec<O, kVec> r;
#pragma unroll
    for (int k = 0; k < kVec; ++k) r.v[k] = g(a.v[k], b.v[k], c.v[k]);
    *reinterpret_cast<AlignedVec<O, kVec>*>(out + i) = r;
  }
  bool aligned() const {
    return aligned_to(out, sizeof(O) * kVec) && (s[0] || aligned_to(in0, sizeof(I0) * kVec)) &&
           (s[1] || aligned_to(in1, sizeof(I1) * kVec)) &&
           (s[2] || aligned_to(in2, sizeof(I2) * kVec));
  }
};

// ---- kernels ----

template <class M>
__global__ void __launch_bounds__(kMapThreads) contig_kernel(M m, int64_t n) {
  constexpr int V = M::kVec;
  int64_t nvec = n / V;
  int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += step) m.vec(v * V);
  int64_t t = nvec * V + tid;  // the last n % V elements
  if (t < n) m.one(t);
}

template <class M, int N>
__global__ void __launch_bounds__(kMapThreads) strided_kernel(M m, OffsetCalc<N> oc, uint32_t n) {
  uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t off[N];
  oc.get(i, off);
  m(off);
}

// ---- host side ----

// Calls launch(shape, strides, base) on pieces of at most INT32_MAX elements (outer dims cut).
template <int N, class F>
void split_32bit(const Shape& shape, const std::array<Shape, N>& st, std::array<int64_t, N> base,
                 F&& launch) {
  int64_t numel = numel_of(shape);
  if (numel <= INT32_MAX) {
    launch(shape, st, base);
    return;
  }
  int64_t outer = shape[0], rest = numel / outer;
  if (rest > INT32_MAX) {
    Shape sub(shape.begin() + 1, shape.end());
    std::array<Shape, N> sub_st;
    for (int k = 0; k < N; ++k) sub_st[k] = Shape(st[k].begin() + 1, st[k].end());
    for (int64_t i = 0; i < outer; ++i) {
      std::array<int64_t, N> b = base;
      for (int k = 0; k < N; ++k) b[k] += i * st[k][0];
      split_32bit<N>(sub, sub_st, b, launch);
    }
    return;
  }
  int64_t piece = INT32_MAX / rest;
  for (int64_t i = 0; i < outer; i += piece) {
    Shape s = shape;
    s[0] = std::min(piece, outer - i);
    std::array<int64_t, N> b = base;
    for (int k = 0; k < N; ++k) b[k] += i * st[k][0];
    launch(s, st, b);
  }
}

// Runs map m over `shape`; strides[k] are operand k's element strides (its pointer in m already
// points at its first element). op names the caller in errors.
template <class M>
void launch_map(const char* op, const Shape& shape,
                const std::array<const Shape*, M::kArity>& strides, M m, const Launch& L) {
  constexpr int N = M::kArity;
  Shape cs;
  std::array<Shape, N> cst;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !cs.empty();
    for (int k = 0; k < N && merge; ++k) merge = cst[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      cs.back() *= shape[d];
      for (int k = 0; k < N; ++k) cst[k].back() = (*strides[k])[d];
    } else {
      cs.push_back(shape[d]);
      for (int k = 0; k < N; ++k) cst[k].push_back((*strides[k])[d]);
    }
  }
  if (cs.empty()) {  // a single element
    cs.push_back(1);
    for (int k = 0; k < N; ++k) cst[k].push_back(0);
  }
  int64_t numel = numel_of(cs);
  if (numel == 0) return;

  if (cs.size() == 1) {
    bool dense = cst[0][0] == 1 || numel == 1;
    for (int k = 1; k < N; ++k) {
      dense = dense && (cst[k][0] == 1 || cst[k][0] == 0 || numel == 1);
      m.s[k - 1] = cst[k][0] == 0 || numel == 1;
    }
    if (dense && m.aligned()) {
      int64_t work = std::max<int64_t>(1, numel / M::kVec);
      int64_t blocks = std::min<int64_t>(ceil_div(work, kMapThreads), int64_t(sm_count(L.device)) * 32);
      contig_kernel<M><<<unsigned(blocks), kMapThreads, 0, L.stream>>>(m, numel);
      FATHOM_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  FATHOM_CHECK(int(cs.size()) <= kMaxDims, op, ": tensor of shape ", shape_str(shape),
               " has ", cs.size(), " non-mergeable dims; the CUDA backend supports ", kMaxDims,
               " (make it contiguous first)");
  std::array<int64_t, N> base{};
  split_32bit<N>(cs, cst, base, [&](const Shape& s, const std::array<Shape, N>& st,
                                    const std::array<int64_t, N>& b) {
    OffsetCalc<N> oc;
    oc.nd = int(s.size());
    for (int d = 0; d < oc.nd; ++d) {
      int src = oc.nd - 1 - d;
      oc.size[d] = IntDivider(uint32_t(s[src]));
      for (int k = 0; k < N; ++k) oc.stride[d][k] = st[k][src];
    }
    for (int k = 0; k < N; ++k) oc.base[k] = b[k];
    uint32_t n = uint32_t(numel_of(s));
    strided_kernel<M, N><<<unsigned(ceil_div(n, kMapThreads)), kMapThreads, 0, L.stream>>>(m, oc, n);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fathom::cuda
