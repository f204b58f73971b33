#pragma once
// Which samples each rank loads, batch by batch. Each epoch's order is a Philox-driven
// permutation of (seed, epoch), so a position needs no stored state beyond (epoch, batch) and
// resumes exactly. Under data parallelism every rank builds the same global batch and takes its
// own contiguous shard of it: the global batch (and so the recipe) does not change with world.
#include <cstdint>
#include <vector>

namespace fathom::data {

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // next batch within the epoch
  bool operator==(const LoaderPosition&) const = default;
};

class DistributedSampler {
 public:
  // global_batch must divide by world; drop_last drops a final partial batch.
  DistributedSampler(int64_t num_samples, int64_t global_batch, int rank = 0, int world = 1,
                     bool shuffle = true, uint64_t seed = 0, bool drop_last = true);

  int64_t num_samples() const { return n_; }
  int64_t global_batch() const { return global_batch_; }
  int64_t batches_per_epoch() const;
  // Samples per rank in a full batch; a final partial batch (drop_last=false) has fewer.
  int64_t local_batch() const { return global_batch_ / world_; }

  // This rank's sample indices of batch p.batch of epoch p.epoch.
  std::vector<int64_t> indices(LoaderPosition p);
  // indices(position()), then advances, rolling into the next epoch after its last batch.
  std::vector<int64_t> next();

  LoaderPosition position() const { return pos_; }
  void set_position(LoaderPosition p);
  void set_epoch(int64_t epoch) { set_position({epoch, 0}); }
  // The position after p.
  LoaderPosition advance(LoaderPosition p) const;

 private:
  void build_order(int64_t epoch);
  int64_t n_, global_batch_;
  int rank_, world_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  LoaderPosition pos_;
  int64_t order_epoch_ = -1;  // the epoch order_ holds, built on first use
  std::vector<int64_t> order_;
};

}  // namespace fathom::data
