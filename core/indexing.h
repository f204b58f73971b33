#pragma once
// Index terms for Tensor::index and index_put_, shaped like torch::indexing:
//
//   using namespace fathom::indexing;
//   x.index({Slice(0, 2), 1, Slice(), Ellipsis, None});   // x[0:2, 1, :, ..., None]
//
// Slice(start, stop, step) takes optional bounds (None for "from the start" / "to the end");
// negative bounds count from the end and out-of-range bounds are clamped, as Python's slices.
// step must be >= 1 (Python's negative steps would need negative strides, which Fathom's views
// do not have). An integer selects (and drops) a dim; negative counts from the end; out of range
// is an error. Ellipsis stands for as many full slices as make the indices cover every dim;
// None inserts a new dim of size 1. Boolean and tensor indices are not supported: use
// masked_fill / where and index_select.
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

namespace fathom::indexing {

inline constexpr std::nullopt_t None = std::nullopt;

struct EllipsisIndexType {
  explicit constexpr EllipsisIndexType(int) {}
};
inline constexpr EllipsisIndexType Ellipsis{0};

struct Slice {
  std::optional<int64_t> start, stop;
  int64_t step = 1;
  Slice(std::optional<int64_t> start = std::nullopt, std::optional<int64_t> stop = std::nullopt,
        int64_t step = 1)
      : start(start), stop(stop), step(step) {}
  std::string str() const;  // "0:2:1", ":" parts empty where None, like Python
};

class TensorIndex {
 public:
  enum class Kind : uint8_t { integer, slice, ellipsis, none };

  // Any integer but bool (PyTorch reads a bool as a mask, which Fathom does not have).
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  TensorIndex(I i) : kind_(Kind::integer), integer_(int64_t(i)) {}
  TensorIndex(Slice s) : kind_(Kind::slice), slice_(s) {}
  TensorIndex(EllipsisIndexType) : kind_(Kind::ellipsis) {}
  TensorIndex(std::nullopt_t) : kind_(Kind::none) {}

  Kind kind() const { return kind_; }
  int64_t integer() const { return integer_; }
  const Slice& slice() const { return slice_; }
  std::string str() const;  // "1", "0:2", "...", "None"

 private:
  Kind kind_;
  int64_t integer_ = 0;
  Slice slice_;
};

}  // namespace fathom::indexing
