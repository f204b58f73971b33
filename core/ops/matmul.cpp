#include "fathom/core/ops/matmul.h"

#include "fathom/core/backend.h"
#include "fathom/core/phase.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::ops {

// A matrix (last two dims) a GEMM can read in place: unit stride along one dim and a leading
// dimension no smaller than the other dim's extent.
static bool gemm_readable(const Tensor& m) {
  int64_t r = m.size(-2), c = m.size(-1), sr = m.stride(-2), sc = m.stride(-1);
  bool row_major = (sc == 1 || c == 1) && (sr >= std::max<int64_t>(c, 1) || r == 1);
  bool col_major = (sr == 1 || r == 1) && (sc >= std::max<int64_t>(r, 1) || c == 1);
  return row_major || col_major;
}

// x [..batch, R, C] -> [B, R, C] without a copy when the batch dims collapse to one stride
// (including stride 0 for a broadcast operand); otherwise a contiguous copy.
static Tensor as_batch3(const Tensor& x, int64_t batch) {
  int64_t r = x.size(-2), c = x.size(-1);
  if (gemm_readable(x)) {
    int64_t nb = x.dim() - 2;
    // The batch dims must collapse to one stride: walk them inside-out, skipping size-1 dims.
    bool uniform = true;
    int64_t bstride = 0, expect = -1;
    for (int64_t d = nb - 1; d >= 0 && uniform; --d) {
      if (x.size(d) == 1) continue;
      if (expect < 0) bstride = expect = x.stride(d);
      uniform = x.stride(d) == expect;
      expect *= x.size(d);
    }
    bool all_zero = true;
    for (int64_t d = 0; d < nb; ++d) all_zero = all_zero && (x.stride(d) == 0 || x.size(d) == 1);
    if (all_zero) bstride = 0;
    if (uniform || all_zero)
      return as_strided(x, {batch, r, c}, {bstride, x.stride(-2), x.stride(-1)}, x.offset());
  }
  return view(contiguous(x), {batch, r, c});
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  phase::Scope phase_scope(phase::Phase::gemm);
  FATHOM_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: operands must have at least one dim, got ",
               a_in.desc(), " and ", b_in.desc());
  FATHOM_CHECK(a_in.device() == b_in.device(), "matmul: a ", a_in.desc(), ", b ", b_in.desc(),
               ": tensors on different devices");
  FATHOM_CHECK(a_in.dtype() == b_in.dtype() && is_floating(a_in.dtype()), "matmul: a ",
               a_in.desc(), ", b ", b_in.desc(), ": expected one floating-point dtype");
  Tensor a = a_in.dim() == 1 ? unsqueeze(a_in, 0) : a_in;
  Tensor b = b_in.dim() == 1 ? unsqueeze(b_in, -1) : b_in;
  int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  FATHOM_CHECK(b.size(-2) == k, "matmul: a ", a_in.desc(), ", b ", b_in.desc(),
               ": inner dimensions ", k, " and ", b.size(-2), " differ");

  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out;
  if (batch_b.empty() && !batch_a.empty() && a.stride(-1) == 1 && a.is_contiguous()) {
    // x [..., K] @ W [K, N]: fold the batch into M for one large GEMM.
    Tensor a2 = view(a, {-1, k});
    // W must still be a layout the GEMM reads (unit stride in one dim); otherwise pack it.
    Tensor w = gemm_readable(b) ? b : contiguous(b);
    Tensor o2 = empty({a2.size(0), n}, a.options());
    if (k == 0) fill_(o2, 0);
    else if (o2.numel()) FATHOM_DISPATCH(a.device(), matmul, unsqueeze(a2, 0), unsqueeze(w, 0), unsqueeze(o2, 0));
    out = view(o2, out_shape);
  } else {
    int64_t nb = numel_of(batch);
    Shape sa = batch, sb = batch;
    sa.insert(sa.end(), {m, k});
    sb.insert(sb.end(), {k, n});
    Tensor a3 = as_batch3(expand(a, sa), nb), b3 = as_batch3(expand(b, sb), nb);
    Tensor o3 = empty({nb, m, n}, a.options());
    if (k == 0) fill_(o3, 0);
    else if (o3.numel()) FATHOM_DISPATCH(a.device(), matmul, a3, b3, o3);
    out = view(o3, out_shape);
  }
  if (a_in.dim() == 1) out = squeeze(out, -2);
  if (b_in.dim() == 1) out = squeeze(out, -1);
  return out;
}

}  // namespace fathom::ops
