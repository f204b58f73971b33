// CPU GEMM: OpenBLAS sgemm/dgemm, single-threaded, on tiles of the output that Fathom's pool
// runs in parallel. Half types are widened to f32 around sgemm.
//
// OpenBLAS's own threads are OpenMP's (Debian's libopenblas-openmp): they would spin and barrier
// against a busy machine exactly as threads.h describes, and two threads' calls would contend. One sgemm per tile instead, tiles
// claimed by whichever thread runs. The tiling depends on the shape alone, so a product is
// bitwise the same on any number of threads.
#include <cblas.h>
#include <omp.h>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"
#include "fathom/core/ops/shape.h"

namespace fathom::cpu {

namespace {

// Output rows/columns of one tile, at most: each tile packs its (rows x K) part of A and
// (K x cols) part of B, so the packing costs 1/rows + 1/cols of the arithmetic.
constexpr int64_t kTile = 256;
// Tile edges are multiples of this (OpenBLAS's register blocks), but the last.
constexpr int64_t kTileAlign = 16;
// Multiply-adds below which a product stays on the calling thread (about 20 us on one core).
constexpr int64_t kGemmGrain = int64_t(1) << 20;

// Transpose flag and leading dimension for a matrix view [rows, cols] with the given strides.
struct GemmOperand {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
  // The element offset of (r, c) of the view.
  int64_t at(int64_t r, int64_t c) const { return trans == CblasNoTrans ? r * ld + c : c * ld + r; }
};
GemmOperand gemm_operand(int64_t rows, int64_t cols, int64_t srow, int64_t scol) {
  if ((scol == 1 || cols == 1) && (srow >= std::max<int64_t>(cols, 1) || rows == 1))
    return {CblasNoTrans, std::max<int64_t>({srow, cols, 1})};
  return {CblasTrans, std::max<int64_t>({scol, rows, 1})};
}

// Splits a dimension of length d into pieces of at most kTile, kTileAlign-aligned.
struct Split {
  int64_t piece, count;
};
Split split(int64_t d) {
  int64_t count = std::max<int64_t>(1, (d + kTile - 1) / kTile);
  int64_t piece = (d + count - 1) / count;
  piece = std::min(d, (piece + kTileAlign - 1) / kTileAlign * kTileAlign);
  return {std::max<int64_t>(piece, 1), piece > 0 ? (d + piece - 1) / piece : 1};
}

// OpenBLAS single-threaded. Its OpenMP build (Debian's libopenblas-openmp) decides on every
// call from the calling thread's OpenMP thread count (omp_get_max_threads(), a per-thread
// setting), so that is 1 while a thread runs tiles and is put back after; a pthread build reads
// its own global count, set to 1 once. Without this, two threads' tiles each start an OpenBLAS
// team, and the second spins on the first's buffers (measured: 5x the CPU time of a step).
class OpenBlasOnThisThread {
 public:
  OpenBlasOnThisThread() : before_(omp_get_max_threads()) {
    static const bool global = [] {
      openblas_set_num_threads(1);
      return true;
    }();
    (void)global;
    if (omp_get_max_threads() != 1) omp_set_num_threads(1);
  }
  ~OpenBlasOnThisThread() {
    if (before_ != 1) omp_set_num_threads(before_);
  }

 private:
  int before_;
};

template <class T, class Gemm>
void batched(const Tensor& a, const Tensor& b, const Tensor& out, Gemm gemm) {
  int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  GemmOperand ga = gemm_operand(M, K, a.stride(1), a.stride(2));
  GemmOperand gb = gemm_operand(K, N, b.stride(1), b.stride(2));
  const T* ap = static_cast<const T*>(a.data_ptr());
  const T* bp = static_cast<const T*>(b.data_ptr());
  T* op = static_cast<T*>(out.data_ptr());
  Split sm = split(M), sn = split(N);
  int64_t tiles = sm.count * sn.count;
  int64_t tile_work = std::max<int64_t>(1, sm.piece * sn.piece * std::max<int64_t>(K, 1));
  parallel_for(B * tiles, std::max<int64_t>(1, kGemmGrain / tile_work), [&](int64_t u0, int64_t u1) {
    OpenBlasOnThisThread one_thread;
    for (int64_t u = u0; u < u1; ++u) {
      int64_t i = u / tiles, t = u % tiles;
      int64_t m0 = (t / sn.count) * sm.piece, n0 = (t % sn.count) * sn.piece;
      int64_t m = std::min(sm.piece, M - m0), n = std::min(sn.piece, N - n0);
      gemm(CblasRowMajor, ga.trans, gb.trans, m, n, K, T(1), ap + i * a.stride(0) + ga.at(m0, 0),
           ga.ld, bp + i * b.stride(0) + gb.at(0, n0), gb.ld, T(0), op + i * M * N + m0 * N + n0, N);
    }
  });
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (a.dtype()) {
    case DType::f32: return batched<float>(a, b, out, cblas_sgemm);
    case DType::f64: return batched<double>(a, b, out, cblas_dgemm);
    case DType::bf16:
    case DType::f16: {
      Tensor a32 = ops::to(a, DType::f32), b32 = ops::to(b, DType::f32);
      Tensor o32 = ops::to(out, DType::f32);
      batched<float>(a32, b32, o32, cblas_sgemm);
      copy(out, o32);
      return;
    }
    default: detail::fail("matmul: unsupported dtype ", dtype_name(a.dtype()));
  }
}

}  // namespace fathom::cpu
