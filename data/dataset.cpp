#include "fathom/data/dataset.h"

#include "fathom/core/memory.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/nn.h"
#include "fathom/core/ops/shape.h"

namespace fathom::data {

namespace {

Shape with_batch(int64_t n, const Shape& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

// Copies each example's field into row k of one preallocated tensor: one allocation per batch
// instead of a growing cat, and a mismatch names both examples.
Tensor stack_field(const std::vector<Example>& ex, const std::vector<int64_t>& indices,
                   Tensor Example::*field, const char* what) {
  const Tensor& first = ex[0].*field;
  Tensor out = empty(with_batch(int64_t(indices.size()), first.shape()), first.options());
  for (size_t k = 0; k < indices.size(); ++k) {
    const Tensor& t = ex[k].*field;
    FATHOM_CHECK(t.shape() == first.shape() && t.dtype() == first.dtype(),
                 "Dataset::get_batch: cannot stack the ", what, " of example ", indices[k], " (",
                 t.desc(), ") with that of example ", indices[0], " (", first.desc(), ")");
    ops::copy_(ops::select(out, 0, int64_t(k)), t);
  }
  return out;
}

}  // namespace

// Batches are data, not activations, whichever thread's grad mode they are made under
// (the loader's, on as every thread's starts): docs/memory.md.
Batch Dataset::get_batch(const std::vector<int64_t>& indices) const {
  memory::Scope ledger(memory::Category::other);
  if (indices.empty()) {
    // A rank's share of a final partial batch can be empty; example 0 gives the shapes.
    FATHOM_CHECK(size() > 0, "Dataset::get_batch: the dataset is empty");
    Example e = get(0);
    return {empty(with_batch(0, e.data.shape()), e.data.options()),
            empty(with_batch(0, e.target.shape()), e.target.options())};
  }
  std::vector<Example> ex;
  ex.reserve(indices.size());
  for (int64_t i : indices) ex.push_back(get(i));
  return {stack_field(ex, indices, &Example::data, "data"),
          stack_field(ex, indices, &Example::target, "target")};
}

TensorDataset::TensorDataset(Tensor data, Tensor targets)
    : data_(std::move(data)), targets_(std::move(targets)) {
  FATHOM_CHECK(data_.dim() >= 1 && targets_.dim() >= 1,
               "TensorDataset: data ", data_.desc(), " and targets ", targets_.desc(),
               " need a leading example dim");
  FATHOM_CHECK(data_.size(0) == targets_.size(0), "TensorDataset: data ", data_.desc(), " has ",
               data_.size(0), " examples but targets ", targets_.desc(), " has ",
               targets_.size(0), ": the first dims must match");
}

Example TensorDataset::get(int64_t index) const {
  FATHOM_CHECK(index >= 0 && index < size(), "TensorDataset::get: index ", index,
               " is out of range for ", size(), " examples");
  return {ops::select(data_, 0, index), ops::select(targets_, 0, index)};
}

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  memory::Scope ledger(memory::Category::other);
  Tensor idx = from_vector(indices, {int64_t(indices.size())});
  return {ops::index_select(data_, 0, ops::to(idx, data_.device())),
          ops::index_select(targets_, 0, ops::to(idx, targets_.device()))};
}

}  // namespace fathom::data
