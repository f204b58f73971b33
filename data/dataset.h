#pragma once
// Map-style datasets, as in PyTorch: size() and get(i) give one example; get_batch(indices)
// gives a stacked batch. The default get_batch stacks get(i) one by one; a dataset held in
// tensors overrides it with one gather per tensor, which is what keeps batching cheap.
//
// get and get_batch may run on the DataLoader's worker thread: they must not touch shared
// mutable state (in particular no draws from a shared Generator; derive any randomness from
// the index so the stream stays reproducible).
#include <cstdint>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::data {

struct Example {
  Tensor data;
  Tensor target;
};

// Examples stacked along a new leading dim: data [B, ...], target [B, ...].
struct Batch {
  Tensor data;
  Tensor target;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // Stacks get(i) for each index; every example must have the same shapes and dtypes.
  virtual Batch get_batch(const std::vector<int64_t>& indices) const;
};

// Example i is (data[i], targets[i]); batches are one index_select of each tensor.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor targets);

  int64_t size() const override { return data_.size(0); }
  Example get(int64_t index) const override;  // views into data and targets
  Batch get_batch(const std::vector<int64_t>& indices) const override;

  const Tensor& data() const { return data_; }
  const Tensor& targets() const { return targets_; }

 private:
  Tensor data_, targets_;
};

}  // namespace fathom::data
