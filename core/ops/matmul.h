#pragma once
// Matrix products. a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast; 1-d
// operands are promoted as in numpy. Transposed views are read in place (GEMM trans flags), not
// copied. CPU: OpenBLAS sgemm/dgemm (halves via f32). CUDA: cuBLASLt, f32 accumulation.
#include "fathom/core/tensor.h"

namespace fathom::ops {

Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace fathom::ops
