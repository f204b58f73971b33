#pragma once
// Reductions over any set of dims (empty = all), keepdim like PyTorch. Half inputs accumulate in
// f32 and return their own dtype; integer sums return i64.
#include "fathom/core/tensor.h"

namespace fathom {

enum class ReduceOp : uint8_t { sum, mean, max, min };

namespace ops {

Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64
// Sum of the squares of every element of every tensor, in one pass each with nothing
// materialised (f64 result; inf or NaN anywhere makes it non-finite). Tensors may be undefined
// (skipped); the defined ones share one device.
double sum_squares(const std::vector<Tensor>& xs);
// Sums x down to `shape` (the inverse of broadcasting it): the gradient of an expand.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace ops
}  // namespace fathom
