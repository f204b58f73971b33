// Differentiable matrix product.
#include "fathom/autograd/engine.h"
#include "fathom/autograd/ops/common.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::saved;

static Tensor mT(const Tensor& x) { return ops::transpose(x, -1, -2); }

// y = a @ b with a, b as numpy promotes them: a 1-d a is a row [1, K], a 1-d b a column [K, 1].
// grad_a = g @ b^T and grad_b = a^T @ g in the promoted shapes, summed over broadcast batch dims
// and reshaped back. Transposes are views: the GEMM reads them in place.
Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor y = ops::matmul(a, b);
  if (!needs_grad({a, b})) return y;
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("matmul", {a, b}, y,
                [a = need_b ? saved(a) : Tensor(), b = need_a ? saved(b) : Tensor(),
                 sa = a.shape(), sb = b.shape(),
                 b_transposed = b.dim() == 2 && b.stride(0) == 1 && b.size(0) > 1 && b.size(1) > 1](
                    const Grads& grads) -> Grads {
                  Shape a2 = sa.size() == 1 ? Shape{1, sa[0]} : sa;
                  Shape b2 = sb.size() == 1 ? Shape{sb[0], 1} : sb;
                  Tensor g = grads[0];
                  if (sa.size() == 1) g = ops::unsqueeze(g, g.dim() - (sb.size() == 1 ? 0 : 1));
                  if (sb.size() == 1) g = ops::unsqueeze(g, -1);
                  Tensor ga, gb;
                  // A split backward wants only one side (docs/pipeline.md): skip the other GEMM.
                  if (b.defined() && autograd::input_wanted(0)) {
                    ga = ops::matmul(g, mT(ops::reshape(b, b2)));
                    ga = ops::reshape(ops::sum_to(ga, a2), sa);
                  }
                  if (a.defined() && autograd::input_wanted(1)) {
                    Tensor ar = ops::reshape(a, a2);
                    if (b2.size() == 2) {
                      // x [..., M, K] @ W [K, N]: one GEMM over the folded batch, not a batched
                      // product followed by a sum. When b is a transposed view (Linear's W^T),
                      // the GEMM writes grad in W's own layout, so W's gradient arrives
                      // contiguous instead of as a transposed view that every consumer must
                      // gather across cache lines.
                      int64_t k = a2.back(), n = b2.back();
                      Tensor x2 = ops::reshape(ar, {-1, k}), g2 = ops::reshape(g, {-1, n});
                      gb = b_transposed ? mT(ops::matmul(mT(g2), x2)) : ops::matmul(mT(x2), g2);
                    } else {
                      gb = ops::sum_to(ops::matmul(mT(ar), g), b2);
                    }
                    gb = ops::reshape(gb, sb);
                  }
                  return {ga, gb};
                });
}

}  // namespace fathom
