// Differentiable views, copies and casts (the view methods of Tensor), cat and split. A view's
// backward maps the gradient of the view back onto the shape of its base.
#include <numeric>

#include "fathom/autograd/ops/common.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::TensorGeometry;

Tensor Tensor::reshape(const Shape& shape) const {
  Tensor y = ops::reshape(*this, shape);
  if (!needs_grad({*this})) return y;
  return record("reshape", {*this}, y, [s = this->shape()](const Grads& g) -> Grads {
    return {ops::reshape(g[0], s)};
  });
}

Tensor Tensor::view(const Shape& shape) const {
  Tensor y = ops::view(*this, shape);
  if (!needs_grad({*this})) return y;
  // The gradient need not have a viewable layout (it may be an expand): reshape, not view.
  return record("view", {*this}, y, [s = this->shape()](const Grads& g) -> Grads {
    return {ops::reshape(g[0], s)};
  });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, "flatten"), e = wrap_dim(end_dim, "flatten");
  FATHOM_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim,
               " (", desc(), ")");
  Shape out(shape().begin(), shape().begin() + s);
  out.push_back(std::accumulate(shape().begin() + s, shape().begin() + e + 1, int64_t(1),
                                std::multiplies<>()));
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Tensor y = ops::transpose(*this, d0, d1);
  if (!needs_grad({*this})) return y;
  return record("transpose", {*this}, y, [d0, d1](const Grads& g) -> Grads {
    return {ops::transpose(g[0], d0, d1)};
  });
}

Tensor Tensor::permute(const Shape& dims) const {
  Tensor y = ops::permute(*this, dims);
  if (!needs_grad({*this})) return y;
  Shape inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], "permute")] = int64_t(i);
  return record("permute", {*this}, y, [inverse](const Grads& g) -> Grads {
    return {ops::permute(g[0], inverse)};
  });
}

// The gradient of a slice: zeros the size of the base with the slice's gradient copied in.
Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  Tensor y = ops::narrow(*this, dim, start, length);
  if (!needs_grad({*this})) return y;
  return record("narrow", {*this}, y,
                [dim, start, length, geo = TensorGeometry::of(*this)](const Grads& g) -> Grads {
                  Tensor gx = zeros(geo.shape, {g[0].dtype(), geo.device});
                  ops::copy_(ops::narrow(gx, dim, start, length), g[0]);
                  return {gx};
                });
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  Tensor y = ops::select(*this, dim, index);
  if (!needs_grad({*this})) return y;
  return record("select", {*this}, y,
                [dim, index, geo = TensorGeometry::of(*this)](const Grads& g) -> Grads {
                  Tensor gx = zeros(geo.shape, {g[0].dtype(), geo.device});
                  ops::copy_(ops::select(gx, dim, index), g[0]);
                  return {gx};
                });
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  Tensor y = ops::unsqueeze(*this, dim);
  if (!needs_grad({*this})) return y;
  int64_t d = dim < 0 ? dim + this->dim() + 1 : dim;
  return record("unsqueeze", {*this}, y, [d](const Grads& g) -> Grads {
    return {ops::squeeze(g[0], d)};
  });
}

Tensor Tensor::squeeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, "squeeze");
  if (this->dim() == 0 || size(d) != 1) return *this;  // nothing to squeeze: no new node
  Tensor y = ops::squeeze(*this, d);
  if (!needs_grad({*this})) return y;
  return record("squeeze", {*this}, y, [d](const Grads& g) -> Grads {
    return {ops::unsqueeze(g[0], d)};
  });
}

Tensor Tensor::expand(const Shape& shape) const {
  Tensor y = ops::expand(*this, shape);
  if (!needs_grad({*this})) return y;
  return record("expand", {*this}, y, [s = this->shape()](const Grads& g) -> Grads {
    return {ops::sum_to(g[0], s)};
  });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor y = ops::contiguous(*this);
  if (!needs_grad({*this})) return y;
  return record("contiguous", {*this}, y, [](const Grads& g) -> Grads { return {g[0]}; });
}

// A cast's gradient is cast back; a cast to an integer type ends the history.
Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  Tensor y = ops::to(*this, dtype);
  if (!is_floating(dtype) || !needs_grad({*this})) return y;
  return record("to", {*this}, y, [from = this->dtype()](const Grads& g) -> Grads {
    return {ops::to(g[0], from)};
  });
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor y = ops::to(*this, device);
  if (!needs_grad({*this})) return y;
  return record("to", {*this}, y, [from = this->device()](const Grads& g) -> Grads {
    return {ops::to(g[0], from)};
  });
}

Tensor Tensor::to(Device device, DType dtype) const {
  if (device == this->device()) return to(dtype);
  if (dtype == this->dtype()) return to(device);
  Tensor y = empty(shape(), {dtype, device});
  ops::copy_(y, *this);  // converts on the source side, then moves the bytes once
  if (!is_floating(dtype) || !needs_grad({*this})) return y;
  return record("to", {*this}, y, [from = options()](const Grads& g) -> Grads {
    Tensor gx = empty(g[0].shape(), from);
    ops::copy_(gx, g[0]);
    return {gx};
  });
}

Tensor Tensor::clone() const {
  Tensor y = ops::clone(*this);
  if (!needs_grad({*this})) return y;
  return record("clone", {*this}, y, [](const Grads& g) -> Grads { return {g[0]}; });
}

// The gradient of a view: zeros the size of the base with the view's gradient copied into the
// same view of them (strided for steps > 1; elements outside the view get 0).
Tensor Tensor::index(const std::vector<indexing::TensorIndex>& indices) const {
  Tensor y = ops::index(*this, indices);
  if (!needs_grad({*this})) return y;
  return record("index", {*this}, y,
                [indices, geo = TensorGeometry::of(*this)](const Grads& g) -> Grads {
                  Tensor gx = zeros(geo.shape, {g[0].dtype(), geo.device});
                  ops::copy_(ops::index(gx, indices), g[0]);
                  return {gx};
                });
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = ops::cat(xs, dim);
  if (!needs_grad(xs)) return y;
  int64_t d = xs[0].wrap_dim(dim, "cat");
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(d));
  return record("cat", xs, y, [d, sizes](const Grads& g) -> Grads {
    Grads out;
    int64_t at = 0;
    for (int64_t n : sizes) {
      out.push_back(ops::narrow(g[0], d, at, n));
      at += n;
    }
    return out;
  });
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  std::vector<Tensor> parts = ops::split(x, split_size, dim);
  if (!needs_grad({x})) return parts;
  int64_t d = x.wrap_dim(dim, "split");
  // Unused parts arrive as zeros (the engine fills them), so the gradient is their concatenation.
  return record("split", {x}, std::move(parts), [d](const Grads& g) -> Grads {
    return {ops::cat(g, d)};
  });
}

}  // namespace fathom
