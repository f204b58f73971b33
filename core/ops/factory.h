#pragma once
// Factories. Random ones draw from a Generator (core/random.h); by default the global one.
// Sizes are checked before anything is allocated (core/checked.h): a negative dim, or a shape
// whose element or byte count overflows int64, is an Error naming the op and the shape.
#include <vector>

#include "fathom/core/checked.h"
#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom {

Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor zeros_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
// [0, end) and [start, end) by step, like torch.arange (default dtype i64).
Tensor arange(int64_t end, TensorOptions opts = DType::i64);
Tensor arange(double start, double end, double step, TensorOptions opts = DType::i64);
// Uniform in [low, high) and normal(mean, std).
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor uniform(const Shape& shape, double low, double high, TensorOptions opts = {},
               Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opts = {},
              Generator* gen = nullptr);
// Copies host values into a new tensor of `shape` (numel must match), cast to opts.dtype.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions opts = {});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                   TensorOptions opts = DType::i64);
// Reads back any tensor (any device/dtype) as host doubles, in row-major order.
std::vector<double> to_vector(const Tensor& t);

}  // namespace fathom
