#pragma once
#include "testing.h"

#include "fathom/data/dataset.h"

namespace fathom::testing {

// Row i of data is [i, i + 0.5, i + 0.25] and target i is i, so a batch names its own indices.
inline std::shared_ptr<data::TensorDataset> numbered(int64_t n) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.insert(v.end(), {double(i), i + 0.5, i + 0.25});
  return std::make_shared<data::TensorDataset>(from_vector(v, {n, 3}), arange(n));
}

}  // namespace fathom::testing
