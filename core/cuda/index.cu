// CUDA gather and scatter-add along the middle dim of [A, V, B]: index_select and index_add
// (embedding forward and backward). Indices arrive validated (in range) and contiguous i64.
//
// index_select only moves bytes: a row of B elements is copied in the widest unit (16, 8, 4, 2
// or 1 bytes) that its size and the pointers allow, so one kernel per unit serves every dtype.
//
// index_add is deterministic and accumulates in the compute type, with no atomics: the
// (index, position) pairs are radix-sorted by index (CUB, stable, so positions stay in order
// within an index), then one thread per (target row, column) walks its run of equal indices,
// adding the sources in index order to the old value, and rounds once on store. For f32, f64
// and integers that is bit-for-bit the CPU's sequential x += src[i]; for bf16/f16 it is more
// accurate than the CPU (which rounds after every add): repeated indices (frequent tokens in an
// embedding gradient) accumulate in f32. Atomics were rejected because their order, hence the
// rounding, changes from run to run, and resumed training must be bitwise reproducible.
#include <cub/device/device_radix_sort.cuh>

#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

// ---- index_select ----

// Block (tx, ty): ty output rows at a time, tx threads along a row of `units` units.
template <class U>
__global__ void index_select_kernel(const U* x, const int64_t* index, U* out, int64_t n,
                                    int64_t V, int64_t units, int64_t rows) {
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * blockDim.y) {
    int64_t a = row / n, i = row % n;
    const U* src = x + (a * V + index[i]) * units;
    U* dst = out + row * units;
    for (int64_t k = threadIdx.x; k < units; k += blockDim.x) dst[k] = src[k];
  }
}

template <class F>
void dispatch_unit(size_t unit, F&& f) {
  switch (unit) {
    case 16: return f.template operator()<uint4>();
    case 8: return f.template operator()<uint2>();
    case 4: return f.template operator()<uint32_t>();
    case 2: return f.template operator()<uint16_t>();
    default: return f.template operator()<uint8_t>();
  }
}

// Threads along a row (a power of two, 1..256) and rows per block for a 256-thread block.
dim3 row_block(int64_t units) {
  int tx = std::min(256, pow2_at_least(units));
  return dim3(unsigned(tx), unsigned(256 / tx));
}

// ---- index_add ----

__global__ void iota_kernel(int32_t* p, int64_t n) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = int32_t(i);
}

// Block (tx, ty): ty sorted positions, tx columns; blockIdx.x -> (a, position block, tile). Only the first position of a run
// of equal keys does work: it sums the whole run in order.
template <class T>
__global__ void index_add_kernel(T* x, const T* src, const uint64_t* keys, const int32_t* perm,
                                 int64_t n, int64_t V, int64_t B, int64_t col_tiles,
                                 int64_t pos_blocks) {
  using A = compute_t<T>;
  int64_t b = blockIdx.x;
  int64_t tile = b % col_tiles;
  b /= col_tiles;
  int64_t pos_block = b % pos_blocks, a = b / pos_blocks;
  int64_t p = pos_block * blockDim.y + threadIdx.y;
  int64_t j = tile * blockDim.x + threadIdx.x;
  if (p >= n || j >= B) return;
  uint64_t key = keys[p];
  if (p > 0 && keys[p - 1] == key) return;  // not the start of a run
  T* dst = x + (a * V + int64_t(key)) * B + j;
  A acc = A(to_c(*dst));
  for (int64_t q = p; q < n && keys[q] == key; ++q)
    acc = A(acc + A(to_c(src[(a * n + perm[q]) * B + j])));
  *dst = cvt<T>(acc);
}

}  // namespace

void index_select(const Tensor& x, const Tensor& index, const Tensor& out) {
  FATHOM_CHECK(x.dim() == 3 && index.dim() == 1 && out.dim() == 3 && x.is_contiguous() &&
                   out.is_contiguous() && index.is_contiguous() && index.dtype() == DType::i64 &&
                   out.dtype() == x.dtype() && out.size(0) == x.size(0) &&
                   out.size(1) == index.size(0) && out.size(2) == x.size(2),
               "index_select: x ", x.desc(), ", index ", index.desc(), ", out ", out.desc(),
               ": expected x [A, V, B], index i64 [n], out [A, n, B], contiguous");
  int64_t A = x.size(0), V = x.size(1), B = x.size(2), n = index.size(0);
  if (A * n * B == 0) return;
  Launch L(out);
  size_t row_bytes = size_t(B) * itemsize(x.dtype());
  size_t unit = 16;
  while (unit > 1 && !(row_bytes % unit == 0 && aligned_to(x.data_ptr(), unit) &&
                       aligned_to(out.data_ptr(), unit)))
    unit /= 2;
  int64_t units = int64_t(row_bytes / unit), rows = A * n;
  dim3 block = row_block(units);
  int64_t blocks = std::min<int64_t>(ceil_div(rows, block.y), int64_t(sm_count(L.device)) * 64);
  dispatch_unit(unit, [&]<class U>() {
    index_select_kernel<U><<<unsigned(blocks), block, 0, L.stream>>>(
        ptr<const U>(x), ptr<const int64_t>(index), ptr<U>(out), n, V, units, rows);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void index_add(const Tensor& x, const Tensor& index, const Tensor& src) {
  FATHOM_CHECK(x.dim() == 3 && index.dim() == 1 && src.dim() == 3 && x.is_contiguous() &&
                   src.is_contiguous() && index.is_contiguous() && index.dtype() == DType::i64 &&
                   src.dtype() == x.dtype() && src.size(0) == x.size(0) &&
                   src.size(1) == index.size(0) && src.size(2) == x.size(2),
               "index_add_: x ", x.desc(), ", index ", index.desc(), ", src ", src.desc(),
               ": expected x [A, V, B], index i64 [n], src [A, n, B], contiguous");
  int64_t A = x.size(0), V = x.size(1), B = x.size(2), n = index.size(0);
  if (A * n * B == 0) return;
  FATHOM_CHECK(n < INT32_MAX, "index_add_: ", n, " indices are more than this kernel's 2^31");
  Launch L(x);
  // Sort (index, position) by index. Only the bits that can differ are sorted.
  int end_bit = 1;
  while (end_bit < 64 && (uint64_t(1) << end_bit) < uint64_t(V)) ++end_bit;
  auto keys_out = allocate(size_t(n) * sizeof(uint64_t), L.device);
  auto perm_in = allocate(size_t(n) * sizeof(int32_t), L.device);
  auto perm_out = allocate(size_t(n) * sizeof(int32_t), L.device);
  auto* ko = static_cast<uint64_t*>(keys_out->data());
  auto* pi = static_cast<int32_t*>(perm_in->data());
  auto* po = static_cast<int32_t*>(perm_out->data());
  iota_kernel<<<unsigned(ceil_div(n, 256)), 256, 0, L.stream>>>(pi, n);
  FATHOM_CUDA_CHECK_LAUNCH();
  // Indices are validated non-negative, so their i64 bits sort as u64.
  const auto* ki = static_cast<const uint64_t*>(index.data_ptr());
  size_t temp_bytes = 0;
  FATHOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ki, ko, pi, po, int(n), 0,
                                                    end_bit, L.stream));
  auto temp = allocate(std::max<size_t>(temp_bytes, 1), L.device);
  FATHOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp->data(), temp_bytes, ki, ko, pi, po,
                                                    int(n), 0, end_bit, L.stream));
  dispatch_all(x.dtype(), "index_add_", [&]<class T>() {
    int tx = std::min(32, pow2_at_least(B)), ty = 256 / tx;
    int64_t col_tiles = ceil_div(B, tx), pos_blocks = ceil_div(n, ty);
    int64_t blocks = A * pos_blocks * col_tiles;
    FATHOM_CHECK(blocks < (int64_t(1) << 31), "index_add_: src ", src.desc(), " is too large");
    index_add_kernel<T><<<unsigned(blocks), dim3(unsigned(tx), unsigned(ty)), 0, L.stream>>>(
        ptr<T>(x), ptr<const T>(src), ko, po, n, V, B, col_tiles, pos_blocks);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
  // The scratch buffers return to the cache; the queued kernels run first (allocator.cpp).
}

}  // namespace fathom::cuda
