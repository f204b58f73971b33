#include "fathom/data/sampler.h"

#include <algorithm>
#include <numeric>

#include "fathom/core/error.h"
#include "fathom/core/random.h"

namespace fathom::data {

DistributedSampler::DistributedSampler(int64_t n, int64_t global_batch, int rank, int world,
                                       bool shuffle, uint64_t seed, bool drop_last)
    : n_(n), global_batch_(global_batch), rank_(rank), world_(world), shuffle_(shuffle),
      seed_(seed), drop_last_(drop_last) {
  FATHOM_CHECK(n > 0, "DistributedSampler: dataset is empty");
  FATHOM_CHECK(world >= 1 && rank >= 0 && rank < world, "DistributedSampler: rank ", rank,
               " is not in a world of ", world);
  FATHOM_CHECK(global_batch > 0 && global_batch % world == 0, "DistributedSampler: global batch ",
               global_batch, " must be positive and divide by the world size ", world);
  FATHOM_CHECK(!drop_last || global_batch <= n, "DistributedSampler: global batch ", global_batch,
               " is larger than the dataset (", n, " samples) and drop_last leaves no batch");
}

int64_t DistributedSampler::batches_per_epoch() const {
  return drop_last_ ? n_ / global_batch_ : (n_ + global_batch_ - 1) / global_batch_;
}

// Fisher-Yates with Philox draws keyed by (seed, epoch): any epoch's order is reproducible
// from the two numbers alone.
void DistributedSampler::build_order(int64_t epoch) {
  order_.resize(n_);
  std::iota(order_.begin(), order_.end(), 0);
  order_epoch_ = epoch;
  if (!shuffle_) return;
  for (int64_t i = n_ - 1; i > 0; --i) {
    Philox4 r = philox(seed_, uint64_t(epoch), uint64_t(i));
    uint64_t x = uint64_t(r.v[0]) << 32 | r.v[1];
    std::swap(order_[i], order_[int64_t(x % uint64_t(i + 1))]);
  }
}

std::vector<int64_t> DistributedSampler::indices(LoaderPosition p) {
  FATHOM_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch < batches_per_epoch(),
               "DistributedSampler: position (epoch ", p.epoch, ", batch ", p.batch,
               ") is outside an epoch of ", batches_per_epoch(), " batches");
  if (order_epoch_ != p.epoch) build_order(p.epoch);
  int64_t start = p.batch * global_batch_;
  int64_t count = std::min(global_batch_, n_ - start);
  // A final partial batch (drop_last=false) is split as evenly as the ranks allow; the last
  // ranks' shares may be smaller or empty.
  int64_t per = (count + world_ - 1) / world_;
  int64_t lo = std::min(count, rank_ * per), hi = std::min(count, lo + per);
  return std::vector<int64_t>(order_.begin() + start + lo, order_.begin() + start + hi);
}

LoaderPosition DistributedSampler::advance(LoaderPosition p) const {
  return p.batch + 1 >= batches_per_epoch() ? LoaderPosition{p.epoch + 1, 0}
                                            : LoaderPosition{p.epoch, p.batch + 1};
}

std::vector<int64_t> DistributedSampler::next() {
  std::vector<int64_t> idx = indices(pos_);
  pos_ = advance(pos_);
  return idx;
}

void DistributedSampler::set_position(LoaderPosition p) {
  FATHOM_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch < batches_per_epoch(),
               "DistributedSampler: position (epoch ", p.epoch, ", batch ", p.batch,
               ") is outside an epoch of ", batches_per_epoch(), " batches");
  pos_ = p;
}

}  // namespace fathom::data
