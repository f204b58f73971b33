// Basic indexing (integers, slices, Ellipsis, None) as one strided view of x: no copy, so the
// result shares storage and writes through it (index_put_) land in x.
#include <algorithm>

#include "fathom/core/ops/shape.h"

namespace fathom {
namespace indexing {

std::string Slice::str() const {
  std::string r;  // appended piece by piece: GCC 12 warns (-Wrestrict) on "a" + to_string(..)
  if (start) r += std::to_string(*start);
  r += ':';
  if (stop) r += std::to_string(*stop);
  if (step != 1) {
    r += ':';
    r += std::to_string(step);
  }
  return r;
}

std::string TensorIndex::str() const {
  switch (kind_) {
    case Kind::integer: return std::to_string(integer_);
    case Kind::slice: return slice_.str();
    case Kind::ellipsis: return "...";
    case Kind::none: return "None";
  }
  return "?";
}

}  // namespace indexing

namespace ops {

using indexing::TensorIndex;
using Kind = TensorIndex::Kind;

static std::string indices_str(const std::vector<TensorIndex>& idx) {
  std::string r = "[";
  for (size_t i = 0; i < idx.size(); ++i) r += (i ? ", " : "") + idx[i].str();
  return r + "]";
}

// A bound resolved like Python's slice.indices() for a positive step: negative counts from the
// end, then clamped into [0, n].
static int64_t resolve_bound(std::optional<int64_t> b, int64_t fallback, int64_t n) {
  if (!b) return fallback;
  int64_t v = *b < 0 ? *b + n : *b;
  return std::clamp<int64_t>(v, 0, n);
}

Tensor index(const Tensor& x, const std::vector<TensorIndex>& idx) {
  int64_t consumed = 0, ellipses = 0;
  for (const TensorIndex& t : idx) {
    if (t.kind() == Kind::integer || t.kind() == Kind::slice) ++consumed;
    if (t.kind() == Kind::ellipsis) ++ellipses;
  }
  FATHOM_CHECK(ellipses <= 1, "index: at most one Ellipsis is allowed, got ", indices_str(idx),
               " for ", x.desc());
  FATHOM_CHECK(consumed <= x.dim(), "index: too many indices ", indices_str(idx), " for ",
               x.desc(), ": ", consumed, " index dims of a tensor of rank ", x.dim());
  Shape shape, strides;
  int64_t offset = x.offset(), d = 0;
  auto keep = [&](int64_t n_dims) {
    for (int64_t k = 0; k < n_dims; ++k, ++d) {
      shape.push_back(x.shape()[d]);
      strides.push_back(x.strides()[d]);
    }
  };
  for (const TensorIndex& t : idx) {
    switch (t.kind()) {
      case Kind::ellipsis: keep(x.dim() - consumed); break;
      case Kind::none:
        shape.push_back(1);
        strides.push_back(1);  // any stride is right for a size-1 dim
        break;
      case Kind::integer: {
        int64_t n = x.shape()[d], i = t.integer();
        FATHOM_CHECK(i >= -n && i < n, "index: index ", i, " is out of range for dim ", d,
                     " of size ", n, " (indices ", indices_str(idx), ", x ", x.desc(), ")");
        offset += (i < 0 ? i + n : i) * x.strides()[d];
        ++d;
        break;
      }
      case Kind::slice: {
        const indexing::Slice& s = t.slice();
        FATHOM_CHECK(s.step >= 1, "index: slice ", s.str(), " at dim ", d, " has step ", s.step,
                     "; the step must be >= 1 (no reversed views; flip is not supported) "
                     "(indices ", indices_str(idx), ", x ", x.desc(), ")");
        int64_t n = x.shape()[d];
        int64_t start = resolve_bound(s.start, 0, n), stop = resolve_bound(s.stop, n, n);
        int64_t len = stop > start ? (stop - start - 1) / s.step + 1 : 0;  // no overflow for huge steps
        // An empty slice keeps the offset where it was: start may be n, one past the end.
        if (len > 0) offset += start * x.strides()[d];
        shape.push_back(len);
        // With one element the stride is never used, and stride * a huge step could overflow.
        strides.push_back(len > 1 ? x.strides()[d] * s.step : x.strides()[d]);
        ++d;
        break;
      }
    }
  }
  keep(x.dim() - d);  // dims not indexed are kept whole
  return as_strided(x, shape, strides, offset);
}

}  // namespace ops
}  // namespace fathom
