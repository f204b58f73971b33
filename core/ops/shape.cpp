#include "fathom/core/ops/shape.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "fathom/core/backend.h"
#include "fathom/core/checked.h"
#include "fathom/core/ops/factory.h"

namespace fathom::ops {

static Tensor make_view(const Tensor& x, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl().storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

// Resolves one -1 and checks the element count.
static Shape infer_shape(const Tensor& x, Shape shape, const char* op) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      FATHOM_CHECK(infer < 0, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer = int64_t(i);
    } else {
      FATHOM_CHECK(shape[i] >= 0, op, ": invalid shape ", shape_str(shape));
      // Checked: a product that wraps could match numel (or divide it) by accident.
      FATHOM_CHECK(mul_fits(known, shape[i], &known), op, ": shape ", shape_str(shape),
                   " is too large: its element count overflows int64");
    }
  }
  if (infer >= 0) {
    FATHOM_CHECK(known != 0 && x.numel() % known == 0, op, ": cannot reshape ", x.desc(), " to ",
                 shape_str(shape));
    shape[infer] = x.numel() / known;
  }
  int64_t n = checked_numel(shape, op);
  FATHOM_CHECK(n == x.numel(), op, ": shape ", shape_str(shape), " has ", n,
               " elements but the tensor ", x.desc(), " has ", x.numel());
  return shape;
}

// Strides for viewing x as `shape` without a copy, or empty when impossible. Groups of old dims
// that are contiguous with each other may be split or merged freely (PyTorch's rule).
static std::optional<Shape> view_strides(const Tensor& x, const Shape& shape) {
  if (x.is_contiguous()) return contiguous_strides(shape);
  const Shape& os = x.shape();
  const Shape& ost = x.strides();
  Shape st(shape.size());
  if (x.numel() == 0) return contiguous_strides(shape);
  int64_t view_d = int64_t(shape.size()) - 1;
  int64_t chunk = 1, tensor_numel = 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  for (int64_t d = int64_t(os.size()) - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    if (d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (chunk < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = chunk * chunk_base_stride;
        chunk *= shape[view_d];
        --view_d;
      }
      if (chunk != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = ost[d - 1];
        tensor_numel = 1;
        chunk = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "view");
  auto st = view_strides(x, shape);
  FATHOM_CHECK(st.has_value(), "view: cannot view ", x.desc(), " with strides ",
               shape_str(x.strides()), " as ", shape_str(shape),
               ": its memory is not laid out for it; use reshape (which copies)");
  return make_view(x, shape, *st, x.offset());
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "reshape");
  if (auto st = view_strides(x, shape)) return make_view(x, shape, *st, x.offset());
  return view(contiguous(x), shape);
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  if (x.dim() == 0) return x;
  d0 = x.wrap_dim(d0, "transpose");
  d1 = x.wrap_dim(d1, "transpose");
  Shape s = x.shape(), st = x.strides();
  std::swap(s[d0], s[d1]);
  std::swap(st[d0], st[d1]);
  return make_view(x, s, st, x.offset());
}

Tensor permute(const Tensor& x, const Shape& dims) {
  FATHOM_CHECK(int64_t(dims.size()) == x.dim(), "permute: ", dims.size(), " dims ",
               shape_str(dims), " for a tensor of rank ", x.dim());
  Shape s(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = x.wrap_dim(dims[i], "permute");
    FATHOM_CHECK(!seen[d], "permute: dim ", d, " repeats in ", shape_str(dims));
    seen[d] = true;
    s[i] = x.shape()[d];
    st[i] = x.strides()[d];
  }
  return make_view(x, s, st, x.offset());
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  dim = x.wrap_dim(dim, "narrow");
  int64_t n = x.shape()[dim];
  if (start < 0) start += n;
  // length <= n - start, not start + length <= n: the sum can overflow for a huge length.
  FATHOM_CHECK(start >= 0 && start <= n && length >= 0 && length <= n - start, "narrow: start ",
               start, " and length ", length, " are out of range for dim ", dim, " of size ", n,
               " (", x.desc(), ")");
  Shape s = x.shape();
  s[dim] = length;
  return make_view(x, s, x.strides(), x.offset() + start * x.strides()[dim]);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  dim = x.wrap_dim(dim, "select");
  int64_t n = x.shape()[dim];
  if (index < 0) index += n;
  FATHOM_CHECK(index >= 0 && index < n, "select: index ", index, " is out of range for dim ", dim,
               " of size ", n, " (", x.desc(), ")");
  Shape s = x.shape(), st = x.strides();
  int64_t off = x.offset() + index * st[dim];
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, s, st, off);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int64_t n = x.dim() + 1;
  FATHOM_CHECK(dim >= -n && dim < n, "unsqueeze: dim ", dim, " out of range for ", x.desc());
  if (dim < 0) dim += n;
  Shape s = x.shape(), st = x.strides();
  int64_t stride = dim < x.dim() ? s[dim] * st[dim] : 1;
  s.insert(s.begin() + dim, 1);
  st.insert(st.begin() + dim, stride);
  return make_view(x, s, st, x.offset());
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  dim = x.wrap_dim(dim, "squeeze");
  if (x.shape()[dim] != 1) return x;
  Shape s = x.shape(), st = x.strides();
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, s, st, x.offset());
}

Tensor expand(const Tensor& x, const Shape& shape) {
  FATHOM_CHECK(shape.size() >= size_t(x.dim()), "expand: cannot expand ", x.desc(), " to ",
               shape_str(shape), " (fewer dims)");
  size_t lead = shape.size() - x.dim();
  Shape st(shape.size(), 0), out = shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) { FATHOM_CHECK(shape[i] >= 0, "expand: invalid size -1 for a new leading dim"); continue; }
    int64_t xs = x.shape()[i - lead];
    if (shape[i] == -1) out[i] = xs;
    FATHOM_CHECK(xs == out[i] || xs == 1, "expand: cannot expand ", x.desc(), " to ",
                 shape_str(shape), ": dim ", i, " has size ", xs, " (must be 1 or ", out[i], ")");
    st[i] = xs == out[i] ? x.strides()[i - lead] : 0;
  }
  // Broadcast dims cost no memory, so only the element count bounds them.
  checked_numel(out, "expand");
  return make_view(x, out, st, x.offset());
}

Tensor as_strided(const Tensor& x, const Shape& shape, const Shape& strides, int64_t offset) {
  FATHOM_CHECK(shape.size() == strides.size(), "as_strided: shape ", shape_str(shape),
               " and strides ", shape_str(strides), " differ in rank");
  // The last element's index, in checked arithmetic: a wrapped sum would pass the bound.
  int64_t hi = offset, step = 0, bytes = 0;
  bool fits = true;
  for (size_t i = 0; i < shape.size(); ++i) {
    FATHOM_CHECK(shape[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride");
    if (shape[i] > 0) fits = fits && mul_fits(shape[i] - 1, strides[i], &step) && add_fits(hi, step, &hi);
  }
  fits = fits && add_fits(hi, int64_t(1), &hi) && mul_fits(hi, int64_t(itemsize(x.dtype())), &bytes);
  FATHOM_CHECK(offset >= 0 && (checked_numel(shape, "as_strided") == 0 ||
                               (fits && size_t(bytes) <= x.impl().storage->nbytes())),
               "as_strided: view ", shape_str(shape), " reaches past the storage of ", x.desc());
  return make_view(x, shape, strides, offset);
}

Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

Tensor clone(const Tensor& x) {
  Tensor out = empty(x.shape(), x.options());
  copy_(out, x);
  return out;
}

Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty(x.shape(), {dtype, x.device()});
  copy_(out, x);
  return out;
}

Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = empty(x.shape(), {x.dtype(), device});
  copy_(out, x);
  return out;
}

void copy_(const Tensor& dst, const Tensor& src) {
  FATHOM_CHECK(broadcast_shapes(src.shape(), dst.shape(), "copy_") == dst.shape(),
               "copy_: src ", src.desc(), " does not broadcast to dst ", dst.desc());
  Tensor s = expand(src, dst.shape());
  if (dst.numel() == 0) return;
  if (dst.device() == s.device()) {
    FATHOM_DISPATCH(dst.device(), copy, dst, s);
    return;
  }
  // Across devices: convert and pack on the source side, move bytes, unpack on the destination.
  Tensor packed = contiguous(to(s, dst.dtype()));
  Tensor landing = dst.is_contiguous() ? dst : empty(dst.shape(), dst.options());
  Device cuda_side = dst.is_cuda() ? dst.device() : packed.device();
  FATHOM_DISPATCH(cuda_side, copy_bytes, landing.data_ptr(), landing.device(), packed.data_ptr(),
                  packed.device(), packed.nbytes());
  if (!landing.is_same(dst)) FATHOM_DISPATCH(dst.device(), copy, dst, landing);
}

void fill_(const Tensor& dst, double value) {
  if (dst.numel()) FATHOM_DISPATCH(dst.device(), fill, dst, value);
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  FATHOM_CHECK(!xs.empty(), "cat: expected at least one tensor");
  const Tensor& first = xs[0];
  dim = first.wrap_dim(dim, "cat");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    bool ok = x.dim() == first.dim() && x.dtype() == first.dtype() && x.device() == first.device();
    for (int64_t d = 0; ok && d < x.dim(); ++d) ok = d == dim || x.shape()[d] == first.shape()[d];
    FATHOM_CHECK(ok, "cat: tensor ", i, " ", x.desc(), " does not match tensor 0 ", first.desc(),
                 " outside dim ", dim);
    out_shape[dim] += x.shape()[dim];
  }
  Tensor out = empty(out_shape, first.options());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    copy_(narrow(out, dim, at, x.shape()[dim]), x);
    at += x.shape()[dim];
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  FATHOM_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  dim = x.wrap_dim(dim, "split");
  std::vector<Tensor> parts;
  for (int64_t at = 0; at < x.shape()[dim]; at += split_size)
    parts.push_back(narrow(x, dim, at, std::min(split_size, x.shape()[dim] - at)));
  return parts;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    FATHOM_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
                 shape_str(b), " do not broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace fathom::ops
