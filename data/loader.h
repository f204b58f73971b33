#pragma once
// A shuffling batch sampler whose position can be saved and restored exactly. Each epoch's
// order is a Philox-driven permutation of (seed, epoch), so it needs no stored state beyond
// (epoch, batch). Under data parallelism every rank builds the same global batch and takes its
// own contiguous shard of it: the global batch (and so the recipe) does not change with world.
#include <cstdint>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::data {

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // next batch within the epoch
};

class BatchLoader {
 public:
  // global_batch must divide by world; drop_last drops a final partial batch.
  BatchLoader(int64_t num_samples, int64_t global_batch, uint64_t seed, bool shuffle = true,
              int rank = 0, int world = 1, bool drop_last = true);

  int64_t batches_per_epoch() const;
  int64_t local_batch() const { return global_batch_ / world_; }
  // This rank's sample indices of the next batch, as an i64 tensor; advances the position and
  // rolls into the next epoch after the last batch.
  Tensor next();
  // True when the next call to next() starts a new epoch.
  bool at_epoch_start() const { return pos_.batch == 0; }

  LoaderPosition position() const { return pos_; }
  void set_position(LoaderPosition p);

 private:
  void build_order();
  int64_t n_, global_batch_;
  uint64_t seed_;
  bool shuffle_, drop_last_;
  int rank_, world_;
  LoaderPosition pos_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace fathom::data
