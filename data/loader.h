#pragma once
// DataLoader: a dataset, a DistributedSampler and an optional background worker that loads up
// to `prefetch` batches ahead into a bounded queue, so loading overlaps compute. The batches and
// their order depend only on (seed, epoch, rank, world), never on prefetch or timing.
//
//   data::DataLoader loader(dataset, data::DataLoaderOptions(128).seed(0).rank(r).world(w));
//   for (int64_t ep = 0; ep < epochs; ++ep)
//     for (auto& batch : loader) step(batch.data, batch.target);  // one epoch
//
// Step-based loops call next(), which rolls into the next epoch. position() is that of the
// next batch next() returns; set_position() resumes there exactly.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>

#include "fathom/core/options.h"
#include "fathom/data/dataset.h"
#include "fathom/data/sampler.h"

namespace fathom::data {

struct DataLoaderOptions {
  // global_batch: samples per step over all ranks (each rank gets global_batch / world).
  explicit DataLoaderOptions(int64_t global_batch) : global_batch_(global_batch) {}
  FATHOM_ARG(int64_t, global_batch);
  FATHOM_ARG(bool, shuffle) = true;
  FATHOM_ARG(uint64_t, seed) = 0;
  FATHOM_ARG(int, rank) = 0;
  FATHOM_ARG(int, world) = 1;
  FATHOM_ARG(bool, drop_last) = true;
  // Batches loaded ahead by a worker thread; 0 loads synchronously in next().
  FATHOM_ARG(int64_t, prefetch) = 2;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  ~DataLoader();  // stops the worker after the batch it is loading, if any
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  const DataLoaderOptions& options() const { return opt_; }
  const Dataset& dataset() const { return *dataset_; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t local_batch() const { return local_batch_; }

  // This rank's next batch. A loading error (from the dataset, on whichever thread) is rethrown
  // here, unchanged, and the position stays at the failed batch.
  Batch next();

  LoaderPosition position() const { return pos_; }
  // Drops batches loaded ahead and restarts from p.
  void set_position(LoaderPosition p);
  // set_position's check alone: throws for a position outside an epoch, changes nothing.
  void check_position(LoaderPosition p) const;
  void set_epoch(int64_t epoch) { set_position({epoch, 0}); }

  // Range-for over the rest of the current epoch: from position() to the epoch's last batch.
  class Iterator {
   public:
    Batch& operator*() { return batch_; }
    Batch* operator->() { return &batch_; }
    Iterator& operator++();
    bool operator==(std::default_sentinel_t) const { return left_ == 0; }

   private:
    friend class DataLoader;
    Iterator(DataLoader* loader, int64_t left);
    DataLoader* loader_;
    int64_t left_;  // batches still to hand out, this one included
    Batch batch_;
  };
  Iterator begin();
  std::default_sentinel_t end() { return {}; }

 private:
  struct Item {
    Batch batch;
    std::exception_ptr error;
  };
  void start_worker();
  void stop_worker();
  void work(LoaderPosition from);

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions opt_;
  // Used by exactly one thread at a time: the worker while it runs, else next() itself.
  DistributedSampler sampler_;
  int64_t batches_per_epoch_, local_batch_;
  LoaderPosition pos_;  // of the next batch handed out

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable ready_, space_;  // queue_ non-empty; queue_ below prefetch (or stop_)
  std::deque<Item> queue_;
  bool stop_ = false;
};

}  // namespace fathom::data
