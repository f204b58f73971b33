#include "fathom/data/loader.h"

#include "fathom/core/threads.h"

namespace fathom::data {

namespace {
const Dataset& checked(const std::shared_ptr<const Dataset>& d) {
  FATHOM_CHECK(d != nullptr, "DataLoader: the dataset is null");
  return *d;
}
}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), opt_(options),
      sampler_(checked(dataset_).size(), opt_.global_batch(), opt_.rank(), opt_.world(),
               opt_.shuffle(), opt_.seed(), opt_.drop_last()),
      batches_per_epoch_(sampler_.batches_per_epoch()), local_batch_(sampler_.local_batch()) {
  FATHOM_CHECK(opt_.prefetch() >= 0, "DataLoader: prefetch must be 0 (synchronous) or more, got ",
               opt_.prefetch());
}

DataLoader::~DataLoader() { stop_worker(); }

// The worker starts lazily, at the first next() after construction or a set_position, so a
// loader that is resumed before use never loads batches it would throw away.
void DataLoader::start_worker() {
  stop_ = false;
  worker_ = std::thread([this, from = pos_] { work(from); });
}

void DataLoader::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  space_.notify_all();
  worker_.join();  // at most the batch it is loading now
  queue_.clear();
}

void DataLoader::work(LoaderPosition p) {
  // Loading is a few memory-bound gathers: sharing the CPU pool here would take cores from the
  // training thread's ops for no gain. The guard is this thread's alone.
  SingleThreadGuard single_thread;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      space_.wait(lk, [&] { return stop_ || int64_t(queue_.size()) < opt_.prefetch(); });
      if (stop_) return;
    }
    Item item;
    try {
      item.batch = dataset_->get_batch(sampler_.indices(p));
    } catch (...) {
      item.error = std::current_exception();
    }
    bool failed = bool(item.error);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(std::move(item));
    }
    ready_.notify_one();
    // The consumer rethrows at this batch and stops us; batches past it would be discarded.
    if (failed) return;
    p = sampler_.advance(p);
  }
}

Batch DataLoader::next() {
  if (opt_.prefetch() == 0) {
    Batch b = dataset_->get_batch(sampler_.indices(pos_));
    pos_ = sampler_.advance(pos_);
    return b;
  }
  if (!worker_.joinable()) start_worker();
  Item item;
  {
    // The worker pushes one item per batch, an error included, and leaves only on stop_, which
    // only this thread sets: the wait always ends.
    std::unique_lock<std::mutex> lk(mu_);
    ready_.wait(lk, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
  }
  space_.notify_one();
  if (item.error) {
    stop_worker();  // a retry restarts at the same batch
    std::rethrow_exception(item.error);
  }
  pos_ = sampler_.advance(pos_);  // const: safe beside the worker
  return std::move(item.batch);
}

void DataLoader::check_position(LoaderPosition p) const {
  FATHOM_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch < batches_per_epoch_,
               "DataLoader: position (epoch ", p.epoch, ", batch ", p.batch,
               ") is outside an epoch of ", batches_per_epoch_, " batches");
}

void DataLoader::set_position(LoaderPosition p) {
  check_position(p);
  stop_worker();
  pos_ = p;
}

DataLoader::Iterator::Iterator(DataLoader* loader, int64_t left) : loader_(loader), left_(left) {
  if (left_ > 0) batch_ = loader_->next();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  if (--left_ > 0) batch_ = loader_->next();
  return *this;
}

DataLoader::Iterator DataLoader::begin() {
  return Iterator(this, batches_per_epoch_ - pos_.batch);
}

}  // namespace fathom::data
