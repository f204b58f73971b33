#pragma once
// 2:4 gradient sparsification with error feedback, the kernels behind DeepComm's compressor.
//
// The gradient is a flat f32 tensor of n values, n divisible by 4. Group g (values 4g..4g+3)
// keeps 2 positions chosen by a rotating pattern, kept_pair((step + g) % 6): every rank derives
// the same mask from the step alone (no mask bytes on the wire, no leader), neighbouring groups
// use different patterns, and a position is never dropped more than twice in a row, so its
// residual cannot grow without bound (docs/ddp.md has the measurements behind this choice).
#include <cstdint>

#include "fathom/core/tensor.h"

namespace fathom {

// The 6 pairs of 4 positions, ordered so consecutive steps alternate complementary pairs.
inline constexpr uint8_t kSparse24Pairs[6][2] = {{0, 1}, {2, 3}, {0, 2}, {1, 3}, {0, 3}, {1, 2}};

namespace ops {
// e = grad + residual; payload [n/2] (f32 or bf16) <- e at the kept positions (rounded to the
// payload dtype); residual <- e - (what the payload carries, scattered back). So, exactly,
// scatter(payload) + new residual == grad + old residual.
void sparse24_compress(const Tensor& grad, const Tensor& residual, const Tensor& payload,
                       uint64_t step);
// grad <- the payload at the kept positions, 0 elsewhere.
void sparse24_decompress(const Tensor& payload, const Tensor& grad, uint64_t step);
}  // namespace ops
}  // namespace fathom
