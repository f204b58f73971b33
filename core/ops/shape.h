#pragma once
// Views (share storage), copies, casts, device moves, concatenation. Raw: no autograd.
#include <vector>

#include "fathom/core/indexing.h"
#include "fathom/core/tensor.h"

namespace fathom::ops {

Tensor view(const Tensor& x, Shape shape);       // -1 allowed once; throws if not viewable
Tensor reshape(const Tensor& x, Shape shape);    // a view when possible, else a copy
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const Shape& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);  // drops dim
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcasting view (stride 0)
Tensor as_strided(const Tensor& x, const Shape& shape, const Shape& strides, int64_t offset);
// x[indices] as a view (core/indexing.h for the rules); core/ops/indexing.cpp.
Tensor index(const Tensor& x, const std::vector<indexing::TensorIndex>& indices);

Tensor contiguous(const Tensor& x);  // x itself when already contiguous
Tensor clone(const Tensor& x);       // always a fresh contiguous copy
Tensor to(const Tensor& x, DType dtype);    // x itself when the dtype matches
Tensor to(const Tensor& x, Device device);  // x itself when the device matches
// dst <- src: src broadcasts to dst's shape; dtype converts; devices may differ.
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);  // views

// Broadcast shape of a and b (numpy rules), or a clear error naming op.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace fathom::ops
