#pragma once
// Shared by the op files: the raw kernels and the recording helpers. Backward lambdas use raw
// fathom::ops only (they run under NoGradGuard; nothing inside them should record).
#include "fathom/autograd/node.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/matmul.h"
#include "fathom/core/ops/nn.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"

namespace fathom::autograd::detail {

// Dims for a reduction: wrapped, sorted, unique; {} means every dim.
inline Shape reduce_dims(const Tensor& x, const Shape& dims, const char* op) {
  Shape out;
  if (dims.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(x.wrap_dim(d, op));
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); ++i)
    FATHOM_CHECK(out[i] != out[i - 1], op, ": dim ", out[i], " repeats in ", shape_str(dims),
                 " (", x.desc(), ")");
  return out;
}

// A gradient of a reduction's output, viewed with the reduced dims back as size 1.
inline Tensor unsqueeze_reduced(const Tensor& g, const Shape& sorted_dims, bool keepdim,
                                int64_t rank) {
  if (keepdim || rank == 0) return g;
  Tensor r = g;
  for (int64_t d : sorted_dims) r = ops::unsqueeze(r, d);
  return r;
}

}  // namespace fathom::autograd::detail
