#include "fathom/data/loader.h"

#include <numeric>

#include "fathom/core/ops/factory.h"
#include "fathom/core/random.h"

namespace fathom::data {

BatchLoader::BatchLoader(int64_t n, int64_t global_batch, uint64_t seed, bool shuffle, int rank,
                         int world, bool drop_last)
    : n_(n), global_batch_(global_batch), seed_(seed), shuffle_(shuffle), drop_last_(drop_last),
      rank_(rank), world_(world) {
  FATHOM_CHECK(n > 0, "BatchLoader: dataset is empty");
  FATHOM_CHECK(world >= 1 && rank >= 0 && rank < world, "BatchLoader: rank ", rank,
               " is not in a world of ", world);
  FATHOM_CHECK(global_batch > 0 && global_batch % world == 0, "BatchLoader: global batch ",
               global_batch, " must be positive and divide by the world size ", world);
  FATHOM_CHECK(!drop_last || global_batch <= n, "BatchLoader: global batch ", global_batch,
               " is larger than the dataset (", n, " samples)");
}

int64_t BatchLoader::batches_per_epoch() const {
  return drop_last_ ? n_ / global_batch_ : (n_ + global_batch_ - 1) / global_batch_;
}

// Fisher-Yates with Philox draws keyed by (seed, epoch): any epoch's order is reproducible
// from the two numbers alone.
void BatchLoader::build_order() {
  order_.resize(n_);
  std::iota(order_.begin(), order_.end(), 0);
  order_epoch_ = pos_.epoch;
  if (!shuffle_) return;
  for (int64_t i = n_ - 1; i > 0; --i) {
    Philox4 r = philox(seed_, uint64_t(pos_.epoch), uint64_t(i));
    uint64_t x = uint64_t(r.v[0]) << 32 | r.v[1];
    std::swap(order_[i], order_[int64_t(x % uint64_t(i + 1))]);
  }
}

Tensor BatchLoader::next() {
  if (order_epoch_ != pos_.epoch) build_order();
  int64_t start = pos_.batch * global_batch_;
  int64_t count = std::min(global_batch_, n_ - start);
  // A final partial batch (drop_last=false) is split as evenly as the ranks allow.
  int64_t per = (count + world_ - 1) / world_;
  int64_t lo = std::min(count, rank_ * per), hi = std::min(count, lo + per);
  std::vector<int64_t> idx(order_.begin() + start + lo, order_.begin() + start + hi);
  if (++pos_.batch >= batches_per_epoch()) {
    pos_.batch = 0;
    ++pos_.epoch;
  }
  return from_vector(idx, {int64_t(idx.size())});
}

void BatchLoader::set_position(LoaderPosition p) {
  FATHOM_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch < batches_per_epoch(),
               "BatchLoader: position (epoch ", p.epoch, ", batch ", p.batch,
               ") is outside an epoch of ", batches_per_epoch(), " batches");
  pos_ = p;
}

}  // namespace fathom::data
