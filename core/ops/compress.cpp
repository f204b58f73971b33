#include "fathom/core/ops/compress.h"

#include "fathom/core/backend.h"

namespace fathom::ops {

static void check(const char* op, const Tensor& grad, const Tensor& payload, const Tensor& residual) {
  FATHOM_CHECK(grad.dtype() == DType::f32 && grad.is_contiguous() && grad.numel() % 4 == 0, op,
               ": gradient ", grad.desc(), " must be contiguous f32 with a multiple of 4 elements");
  FATHOM_CHECK(payload.is_contiguous() && payload.numel() * 2 == grad.numel() &&
                   (payload.dtype() == DType::f32 || payload.dtype() == DType::bf16) &&
                   payload.device() == grad.device(),
               op, ": payload ", payload.desc(), " must be contiguous f32 or bf16 with half of the ",
               grad.numel(), " gradient values, on ", grad.device().str());
  if (residual.defined())
    FATHOM_CHECK(residual.dtype() == DType::f32 && residual.is_contiguous() &&
                     residual.numel() == grad.numel() && residual.device() == grad.device(),
                 op, ": residual ", residual.desc(), " must match the gradient ", grad.desc());
}

void sparse24_compress(const Tensor& grad, const Tensor& residual, const Tensor& payload,
                       uint64_t step) {
  check("sparse24_compress", grad, payload, residual);
  FATHOM_CHECK(residual.defined(), "sparse24_compress: a residual tensor is required");
  if (grad.numel()) FATHOM_DISPATCH(grad.device(), sparse24_compress, grad, residual, payload, step);
}

void sparse24_decompress(const Tensor& payload, const Tensor& grad, uint64_t step) {
  check("sparse24_decompress", grad, payload, Tensor());
  if (grad.numel()) FATHOM_DISPATCH(grad.device(), sparse24_decompress, payload, grad, step);
}

}  // namespace fathom::ops
