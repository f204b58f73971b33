#pragma once
// Overflow-checked size arithmetic. Shapes come from users and from files (IDX headers,
// checkpoints): a product that wraps silently turns "2^64 bytes" into "0 bytes", passes every
// later size check and then indexes far out of bounds. Every shape product and byte count in
// core and the readers goes through these helpers, so an impossible size is a fathom::Error
// naming the op (or file) before anything is allocated.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fathom/core/error.h"

namespace fathom {

// a * b into *out; false when the true product does not fit (the compiler's exact check).
template <class T>
[[nodiscard]] inline bool mul_fits(T a, T b, T* out) {
  return !__builtin_mul_overflow(a, b, out);
}
template <class T>
[[nodiscard]] inline bool add_fits(T a, T b, T* out) {
  return !__builtin_add_overflow(a, b, out);
}

namespace detail {
// "[4, 8]", as shape_str (which lives in tensor.h; this header sits below it).
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string r = "[";
  for (size_t i = 0; i < shape.size(); ++i) r += (i ? ", " : "") + std::to_string(shape[i]);
  return r + "]";
}
}  // namespace detail

// The element count of `shape`, checked: a negative dim, or dims whose product does not fit in
// int64, throw an Error naming `op` and the shape. Zero-size dims give 0, but the product of
// the other dims must still fit, because contiguous strides multiply them (as max(d, 1)).
inline int64_t checked_numel(const std::vector<int64_t>& shape, const char* op) {
  int64_t span = 1;  // product of max(d, 1)
  bool zero = false;
  for (int64_t d : shape) {
    FATHOM_CHECK(d >= 0, op, ": negative dimension in shape ", detail::shape_text(shape));
    if (d == 0) {
      zero = true;
      continue;
    }
    FATHOM_CHECK(mul_fits(span, d, &span), op, ": shape ", detail::shape_text(shape),
                 " is too large: its element count overflows int64");
  }
  return zero ? 0 : span;
}

// The byte size of a contiguous `shape` of `itemsize`-byte elements, checked to fit in int64
// (so that it also fits every size_t and ptrdiff_t the kernels compute with).
inline size_t checked_nbytes(const std::vector<int64_t>& shape, size_t itemsize, const char* op) {
  int64_t n = checked_numel(shape, op), bytes = 0;
  FATHOM_CHECK(mul_fits(n, int64_t(itemsize), &bytes), op, ": shape ", detail::shape_text(shape),
               " is too large: ", n, " elements of ", itemsize, " bytes overflow int64");
  return size_t(bytes);
}

}  // namespace fathom
