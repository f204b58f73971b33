// Differentiable reductions and the reduction methods of Tensor.
#include "fathom/autograd/ops/common.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::saved;
using autograd::detail::reduce_dims;
using autograd::detail::unsqueeze_reduced;

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  Tensor y = ops::sum(x, dims, keepdim);
  if (!needs_grad({x})) return y;
  Shape rd = reduce_dims(x, dims, "sum");
  // The gradient is g broadcast back over the reduced dims: a stride-0 view, no copy.
  return record("sum", {x}, y, [rd, keepdim, shape = x.shape()](const Grads& g) -> Grads {
    return {ops::expand(unsqueeze_reduced(g[0], rd, keepdim, int64_t(shape.size())), shape)};
  });
}

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  Tensor y = ops::mean(x, dims, keepdim);
  if (!needs_grad({x})) return y;
  Shape rd = reduce_dims(x, dims, "mean");
  int64_t count = 1;
  for (int64_t d : rd) count *= x.shape()[d];
  return record("mean", {x}, y, [rd, keepdim, count, shape = x.shape()](const Grads& g) -> Grads {
    Tensor gs = ops::binary(BinaryOp::div, g[0], double(std::max<int64_t>(count, 1)));
    return {ops::expand(unsqueeze_reduced(gs, rd, keepdim, int64_t(shape.size())), shape)};
  });
}

Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) {
  Tensor y = ops::amax(x, dims, keepdim);
  if (!needs_grad({x})) return y;
  Shape rd = reduce_dims(x, dims, "amax");
  // Every element equal to the max shares the gradient evenly (PyTorch's amax rule).
  return record("amax", {x}, y,
                [rd, keepdim, x = saved(x), y = saved(y)](const Grads& g) -> Grads {
                  int64_t rank = x.dim();
                  Tensor yk = ops::expand(unsqueeze_reduced(y, rd, keepdim, rank), x.shape());
                  Tensor hit = ops::to(ops::binary(BinaryOp::eq, x, yk), g[0].dtype());
                  Tensor count = ops::sum(hit, rd, true);
                  Tensor gk = unsqueeze_reduced(g[0], rd, keepdim, rank);
                  return {ops::binary(BinaryOp::mul, hit, ops::binary(BinaryOp::div, gk, count))};
                });
}

Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return fathom::sum(*this, dims, keepdim); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return fathom::mean(*this, dims, keepdim); }
Tensor Tensor::amax(const Shape& dims, bool keepdim) const { return fathom::amax(*this, dims, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return ops::argmax(*this, dim, keepdim); }

}  // namespace fathom
