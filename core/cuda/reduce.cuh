#pragma once
// Reduction engine over x [outer, r, inner] contiguous -> [outer, inner], shared by reduce.cu
// (sum, mean, max, min) and argmax.cu. Deterministic like the CPU reference: how the work is
// cut depends only on the shape and the device's SM count, and partial results merge in a
// fixed order (no atomics).
//
//  - inner == 1 (reducing contiguous rows): rows_kernel. A warp per row (8 rows per block)
//    when a row is short, else a block of up to 1024 threads per row, 16-byte loads; warp
//    shuffles then shared memory combine the threads.
//  - inner > 1 (reducing a strided dim): cols_kernel. A block of bx x by threads covers bx
//    consecutive inner positions (coalesced loads); the by threads of a column split r and
//    are merged in order through shared memory.
// When there are too few outputs to fill the GPU (a full sum, the column sum of a tall
// matrix), r is cut into segments whose partial states go to a scratch buffer, and a second
// launch of the same kernel merges them.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

constexpr int kColThreads = 256;

// A reducer R: State, identity(), combine(a, b), load(value, k) for element k of the reduced
// dim. Again<R> is R reading states back from a partial buffer.
template <class R>
struct Again : R {
  using State = typename R::State;
  __device__ __forceinline__ State load(State s, int64_t) const { return s; }
};

// Store functors write output i from a final state.
template <class S>
struct StorePartial {
  S* out;
  __device__ __forceinline__ void operator()(int64_t i, S a) const { out[i] = a; }
};

// x [rows, r] (inner == 1). Block mode (blockDim.y == 1): block b reduces segment b % nseg of
// row b / nseg. Warp mode (blockDim.x == 32, blockDim.y rows per block, nseg == 1).
template <class In, class R, class Store>
__global__ void rows_kernel(const In* x, int64_t rows, int64_t r, int64_t nseg, int64_t seg_len,
                            R red, Store store) {
  using S = typename R::State;
  __shared__ S smem[32];
  int64_t row, seg;
  if (blockDim.y > 1) {
    row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    seg = 0;
    if (row >= rows) return;  // warp mode: no block barrier follows
  } else {
    row = blockIdx.x / nseg;
    seg = blockIdx.x % nseg;
  }
  int64_t start = seg * seg_len;
  int64_t len = r - start < seg_len ? r - start : seg_len;
  const In* p = x + row * r + start;
  S acc = red.identity();
  row_for_each(len, threadIdx.x, blockDim.x,
               [&](int64_t i, In v) { acc = red.combine(acc, red.load(v, start + i)); }, p);
  acc = group_allreduce(acc, red, smem);
  if (threadIdx.x == 0) store(row * nseg + seg, acc);
}

// x [outer, r, inner]; block (bx, by); blockIdx.x -> (o, seg, tile of bx inner positions).
template <class In, class R, class Store>
__global__ void __launch_bounds__(kColThreads)
    cols_kernel(const In* x, int64_t r, int64_t inner, int64_t nseg, int64_t seg_len,
                int64_t tiles, R red, Store store) {
  using S = typename R::State;
  __shared__ alignas(16) unsigned char buf[kColThreads * sizeof(S)];
  S* sm = reinterpret_cast<S*>(buf);
  int64_t b = blockIdx.x;
  int64_t tile = b % tiles;
  b /= tiles;
  int64_t seg = b % nseg, o = b / nseg;
  int64_t c = tile * blockDim.x + threadIdx.x;
  int64_t start = seg * seg_len, end = start + seg_len < r ? start + seg_len : r;
  S acc = red.identity();
  if (c < inner) {
    const In* p = x + o * r * inner + c;
    for (int64_t j = start + threadIdx.y; j < end; j += blockDim.y)
      acc = red.combine(acc, red.load(p[j * inner], j));
  }
  sm[threadIdx.y * blockDim.x + threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < inner) {
    for (unsigned y = 1; y < blockDim.y; ++y) acc = red.combine(acc, sm[y * blockDim.x + threadIdx.x]);
    store((o * nseg + seg) * inner + c, acc);
  }
}

// One launch of rows_kernel over `rows` rows of length r, in segments of seg_len.
template <class In, class R, class Store>
void launch_rows(const In* x, int64_t rows, int64_t r, int64_t nseg, int64_t seg_len, R red,
                 Store store, const Launch& L) {
  int threads = row_threads(seg_len, sizeof(In));
  if (nseg == 1 && threads == 32) {
    int64_t blocks = ceil_div(rows, 8);
    FATHOM_CHECK(blocks < (int64_t(1) << 31), "reduce: too many rows (", rows, ")");
    rows_kernel<In, R, Store><<<unsigned(blocks), dim3(32, 8), 0, L.stream>>>(
        x, rows, r, nseg, seg_len, red, store);
  } else {
    int64_t blocks = rows * nseg;
    FATHOM_CHECK(blocks < (int64_t(1) << 31), "reduce: too many rows (", rows, ")");
    rows_kernel<In, R, Store><<<unsigned(blocks), dim3(unsigned(threads), 1), 0, L.stream>>>(
        x, rows, r, nseg, seg_len, red, store);
  }
  FATHOM_CUDA_CHECK_LAUNCH();
}

template <class In, class R, class Store>
void launch_cols(const In* x, int64_t outer, int64_t r, int64_t inner, int64_t nseg,
                 int64_t seg_len, R red, Store store, const Launch& L) {
  int bx = std::min(32, pow2_at_least(inner)), by = kColThreads / bx;
  int64_t tiles = ceil_div(inner, bx), blocks = outer * nseg * tiles;
  FATHOM_CHECK(blocks < (int64_t(1) << 31), "reduce: output [", outer, ", ", inner,
               "] is too large");
  cols_kernel<In, R, Store><<<unsigned(blocks), dim3(unsigned(bx), unsigned(by)), 0, L.stream>>>(
      x, r, inner, nseg, seg_len, tiles, red, store);
  FATHOM_CUDA_CHECK_LAUNCH();
}

// Reduces x [outer, r, inner] with reducer `red`, writing outputs through `store`.
template <class T, class R, class Store>
void run_reduce(const T* x, int64_t outer, int64_t r, int64_t inner, R red, Store store,
                const Launch& L) {
  using S = typename R::State;
  if (outer * inner == 0) return;
  // Enough threads to fill every SM (2048 resident threads each).
  int64_t want = int64_t(sm_count(L.device)) * 2048;
  if (inner == 1) {
    int threads = row_threads(r, sizeof(T));
    int64_t min_seg = int64_t(threads) * kVec16<T> * 4;  // each thread loads 4+ vectors
    int64_t nseg = 1;
    if (outer * threads < want && r >= 2 * min_seg)
      nseg = std::min(ceil_div(want, outer * threads), ceil_div(r, min_seg));
    // Segments of a multiple of 16 elements keep their starts as aligned as the row's.
    int64_t seg_len = ceil_div(ceil_div(r, nseg), 16) * 16;
    nseg = std::max<int64_t>(1, ceil_div(r, seg_len));
    if (nseg == 1) return launch_rows(x, outer, r, 1, std::max<int64_t>(r, 1), red, store, L);
    auto partial = allocate(size_t(outer * nseg) * sizeof(S), L.device);  // [outer, nseg]
    S* pp = static_cast<S*>(partial->data());
    launch_rows(x, outer, r, nseg, seg_len, red, StorePartial<S>{pp}, L);
    // The scratch returns to the cache when `partial` dies; the kernel reading it is queued
    // first on the same stream (allocator.cpp).
    return launch_rows(static_cast<const S*>(pp), outer, nseg, 1, nseg, Again<R>{red}, store, L);
  }
  int bx = std::min(32, pow2_at_least(inner)), by = kColThreads / bx;
  int64_t base = outer * ceil_div(inner, bx) * kColThreads;
  int64_t nseg = 1;
  if (base < want && r >= 2 * by * 16)
    nseg = std::min(ceil_div(want, base), ceil_div(r, int64_t(by) * 16));
  int64_t seg_len = ceil_div(r, nseg);
  nseg = std::max<int64_t>(1, ceil_div(r, seg_len));
  if (nseg == 1) return launch_cols(x, outer, r, inner, 1, std::max<int64_t>(r, 1), red, store, L);
  auto partial = allocate(size_t(outer * nseg * inner) * sizeof(S), L.device);  // [outer, nseg, inner]
  S* pp = static_cast<S*>(partial->data());
  launch_cols(x, outer, r, inner, nseg, seg_len, red, StorePartial<S>{pp}, L);
  launch_cols(static_cast<const S*>(pp), outer, nseg, inner, 1, nseg, Again<R>{red}, store, L);
}

}  // namespace fathom::cuda
