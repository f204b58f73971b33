#pragma once
#include "fathom/core/options.h"

#include <array>
#include <cstdint>

namespace fathom::nn {

// A {h, w} option that also takes one number for both, as PyTorch's ExpandingArray<2>:
// Conv2dOptions(3, 8, 3).stride(2).padding({1, 0}).
struct Size2 {
  Size2(int64_t v) : value{v, v} {}  // NOLINT: implicit, so .stride(2) reads naturally
  Size2(int64_t h, int64_t w) : value{h, w} {}
  Size2(std::array<int64_t, 2> p) : value(p) {}  // NOLINT
  operator std::array<int64_t, 2>() const { return value; }
  int64_t operator[](size_t i) const { return value[i]; }
  std::array<int64_t, 2> value;
};

}  // namespace fathom::nn
