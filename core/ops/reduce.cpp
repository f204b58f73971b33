#include "fathom/core/ops/reduce.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "fathom/core/backend.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::ops {

namespace {

const char* reduce_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "amax", "amin"};
  return names[int(op)];
}

// Which dims a reduction covers: all of them for an empty list (PyTorch's dim=None).
std::vector<bool> reduced_mask(const Tensor& x, const Shape& dims, const char* op) {
  std::vector<bool> mask(size_t(x.dim()), dims.empty());
  for (int64_t d : dims) {
    int64_t w = x.wrap_dim(d, op);
    if (x.dim() == 0) continue;  // dim 0 or -1 of a scalar names the scalar itself
    FATHOM_CHECK(!mask[size_t(w)], op, ": dim ", d, " repeats in dims ", shape_str(dims),
                 " for ", x.desc());
    mask[size_t(w)] = true;
  }
  return mask;
}

// x laid out for a kernel: contiguous, read as [outer, r, inner]. `kept` lists the kept dims of
// x (those of size > 1) in the order the kernel writes them.
struct Layout {
  Tensor x;
  int64_t outer = 1, r = 1, inner = 1;
  std::vector<int64_t> kept;
};

// True when x covers its memory without gaps or overlaps, in some order of its dims (a
// transpose of a contiguous tensor): such a tensor is reduced in memory order, not copied.
bool dense_in(const Tensor& x, const std::vector<int64_t>& by_stride) {
  int64_t expect = 1;
  for (size_t i = by_stride.size(); i-- > 0;) {
    if (x.stride(by_stride[i]) != expect) return false;
    expect *= x.size(by_stride[i]);
  }
  return true;
}

Layout arrange(const Tensor& x, const std::vector<bool>& reduced) {
  // Dims of size 1 change neither memory nor results: leave them out.
  std::vector<int64_t> order;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (x.size(d) != 1) order.push_back(d);
  if (!x.is_contiguous()) {
    std::vector<int64_t> by_stride = order;
    std::stable_sort(by_stride.begin(), by_stride.end(),
                     [&](int64_t a, int64_t b) { return x.stride(a) > x.stride(b); });
    if (dense_in(x, by_stride)) order = by_stride;
  }
  // Kept dims after the last reduced one stay innermost; the other kept dims go outside, and
  // the reduced dims gather in between. When they are already adjacent this is x itself.
  int64_t last = -1;
  for (size_t i = 0; i < order.size(); ++i)
    if (reduced[size_t(order[i])]) last = int64_t(i);
  Layout L;
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < last; ++i)
    if (!reduced[size_t(order[size_t(i)])]) {
      perm.push_back(order[size_t(i)]);
      L.kept.push_back(order[size_t(i)]);
      L.outer *= x.size(order[size_t(i)]);
    }
  for (int64_t i = 0; i <= last; ++i)
    if (reduced[size_t(order[size_t(i)])]) {
      perm.push_back(order[size_t(i)]);
      L.r *= x.size(order[size_t(i)]);
    }
  for (size_t i = size_t(last + 1); i < order.size(); ++i) {
    perm.push_back(order[i]);
    L.kept.push_back(order[i]);
    L.inner *= x.size(order[i]);
  }
  Shape shape, strides;
  for (int64_t d : perm) {
    shape.push_back(x.size(d));
    strides.push_back(x.stride(d));
  }
  L.x = contiguous(as_strided(x, shape, strides, x.offset()));
  return L;
}

// Runs the reduction kernel (argmax, or `op`) of x over `reduced` into out, which has x's shape
// with the reduced dims set to 1 and is contiguous.
void run_reduction(const Tensor& x, const std::vector<bool>& reduced, const Tensor& out,
                   bool is_argmax, ReduceOp op) {
  Layout L = arrange(x, reduced);
  Tensor x3 = view(L.x, {L.outer, L.r, L.inner});
  bool in_order = std::is_sorted(L.kept.begin(), L.kept.end());
  // Kept dims read in memory order but not in x's order (a transposed input): write them in the
  // kernel's order, then permute into place. The output is r times smaller than the input.
  Tensor dst = in_order ? out : empty({L.outer * L.inner}, out.options());
  Tensor dst2 = view(dst, {L.outer, L.inner});
  if (is_argmax) FATHOM_DISPATCH(x.device(), argmax, x3, L.outer, L.r, L.inner, dst2);
  else FATHOM_DISPATCH(x.device(), reduce, op, x3, L.outer, L.r, L.inner, dst2);
  if (in_order) return;
  std::vector<int64_t> sorted = L.kept;
  std::sort(sorted.begin(), sorted.end());
  Shape logical, perm, tmp_shape;
  for (int64_t d : sorted) logical.push_back(x.size(d));
  for (int64_t d : L.kept) {
    perm.push_back(std::lower_bound(sorted.begin(), sorted.end(), d) - sorted.begin());
    tmp_shape.push_back(x.size(d));
  }
  copy_(permute(view(out, logical), perm), view(dst, tmp_shape));
}

Shape keepdim_shape(const Tensor& x, const std::vector<bool>& reduced) {
  Shape s = x.shape();
  for (size_t d = 0; d < s.size(); ++d)
    if (reduced[d]) s[d] = 1;
  return s;
}

Tensor drop_reduced(const Tensor& out, const Tensor& x, const std::vector<bool>& reduced) {
  Shape s;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!reduced[size_t(d)]) s.push_back(x.size(d));
  return view(out, s);
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim) {
  const char* name = reduce_name(op);
  std::vector<bool> reduced = reduced_mask(x, dims, name);
  FATHOM_CHECK(op != ReduceOp::mean || is_floating(x.dtype()), name,
               ": expected a floating-point tensor, got ", x.desc(),
               "; the mean of integers is not defined, convert first with .to(kFloat32)");
  int64_t r = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (reduced[size_t(d)]) r *= x.size(d);
  DType dt = op == ReduceOp::sum && !is_floating(x.dtype()) ? DType::i64 : x.dtype();
  Tensor out = empty(keepdim_shape(x, reduced), {dt, x.device()});
  if (out.numel() > 0) {
    if (r == 0) {
      // Over nothing: the sum is 0 and the mean 0/0 (NaN, as PyTorch); max and min have no
      // identity to return.
      FATHOM_CHECK(op == ReduceOp::sum || op == ReduceOp::mean, name, ": cannot reduce ",
                   x.desc(), " over dims ", shape_str(dims.empty() ? x.shape() : dims),
                   ": they have zero elements and ", name,
                   " has no identity; reduce over non-empty dims");
      fill_(out, op == ReduceOp::sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    } else {
      run_reduction(x, reduced, out, false, op);
    }
  }
  return keepdim ? out : drop_reduced(out, x, reduced);
}

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  return reduce(ReduceOp::sum, x, dims, keepdim);
}
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  return reduce(ReduceOp::mean, x, dims, keepdim);
}
Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) {
  return reduce(ReduceOp::max, x, dims, keepdim);
}
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) {
  return reduce(ReduceOp::min, x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  std::vector<bool> reduced = reduced_mask(x, {dim}, "argmax");
  Tensor out = empty(keepdim_shape(x, reduced), {DType::i64, x.device()});
  if (out.numel() > 0) {
    FATHOM_CHECK(x.numel() > 0, "argmax: dim ", dim, " of ", x.desc(),
                 " is empty, so there is no maximum to point to");
    run_reduction(x, reduced, out, true, ReduceOp::max);
  }
  return keepdim ? out : drop_reduced(out, x, reduced);
}

double sum_squares(const std::vector<Tensor>& xs) {
  std::vector<Tensor> list;
  for (const Tensor& x : xs) {
    if (!x.defined() || x.numel() == 0) continue;
    FATHOM_CHECK(is_floating(x.dtype()), "sum_squares: expected floating-point tensors, got ", x.desc());
    FATHOM_CHECK(list.empty() || x.device() == list[0].device(), "sum_squares: tensors on different "
                 "devices: ", list.empty() ? "" : list[0].desc(), " and ", x.desc());
    list.push_back(contiguous(x));
  }
  if (list.empty()) return 0.0;
  Tensor out = zeros({int64_t(list.size())}, {DType::f64, list[0].device()});
  FATHOM_DISPATCH(list[0].device(), sum_squares, list, out);
  double total = 0;
  for (double v : to_vector(out)) total += v;  // in order: the same answer every time
  return total;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  int64_t lead = x.dim() - int64_t(shape.size());
  bool ok = lead >= 0;
  Shape dims;
  for (int64_t d = 0; ok && d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    int64_t want = shape[size_t(d - lead)];
    ok = want == x.size(d) || want == 1;
    if (want == 1 && x.size(d) != 1) dims.push_back(d);
  }
  FATHOM_CHECK(ok, "sum_to: cannot sum ", x.desc(), " down to ", shape_str(shape),
               ": the target does not broadcast to the input's shape");
  // An empty list would mean "all dims" to reduce: with nothing to sum, x already has `shape`.
  if (dims.empty()) return x;
  return view(reduce(ReduceOp::sum, x, dims, true), shape);
}

}  // namespace fathom::ops
