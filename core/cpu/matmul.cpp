// CPU GEMM: OpenBLAS sgemm/dgemm per batch entry. Half types are widened to f32 around sgemm.
#include <cblas.h>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"
#include "fathom/core/ops/shape.h"

namespace fathom::cpu {

// Transpose flag and leading dimension for a matrix view [rows, cols] with the given strides.
struct GemmOperand {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};
static GemmOperand gemm_operand(int64_t rows, int64_t cols, int64_t srow, int64_t scol) {
  if ((scol == 1 || cols == 1) && (srow >= std::max<int64_t>(cols, 1) || rows == 1))
    return {CblasNoTrans, std::max<int64_t>({srow, cols, 1})};
  return {CblasTrans, std::max<int64_t>({scol, rows, 1})};
}

template <class T, class Gemm>
static void batched(const Tensor& a, const Tensor& b, const Tensor& out, Gemm gemm) {
  int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  GemmOperand ga = gemm_operand(M, K, a.stride(1), a.stride(2));
  GemmOperand gb = gemm_operand(K, N, b.stride(1), b.stride(2));
  const T* ap = static_cast<const T*>(a.data_ptr());
  const T* bp = static_cast<const T*>(b.data_ptr());
  T* op = static_cast<T*>(out.data_ptr());
  for (int64_t i = 0; i < B; ++i)
    gemm(CblasRowMajor, ga.trans, gb.trans, M, N, K, T(1), ap + i * a.stride(0), ga.ld,
         bp + i * b.stride(0), gb.ld, T(0), op + i * M * N, N);
}

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
