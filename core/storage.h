#pragma once
// A refcounted block of memory on one device. Tensors (and their views) share one Storage.
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>

#include "fathom/core/device.h"
#include "fathom/core/memory.h"

namespace fathom {

class Storage {
 public:
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
      : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}
  ~Storage() {
    if (counted_) memory::count_free(device_.type, category(), int64_t(nbytes_));
    if (deleter_) deleter_(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // The ledger category this block is counted under (memory.h).
  memory::Category category() const { return category_.load(std::memory_order_relaxed); }
  // Called once by allocate(): counts the block in the ledger until the Storage dies.
  void count_in_ledger(memory::Category c) {
    if (counted_) return;
    category_.store(c, std::memory_order_relaxed);
    counted_ = true;
    memory::count_allocation(device_.type, c, int64_t(nbytes_));
  }
  // Moves the block to category c from now on (a tensor registered as a parameter, a backward
  // temporary taken over as a gradient). An exchange, so two threads recounting one block
  // still leave the ledger consistent.
  void recount(memory::Category c) {
    if (!counted_) return;
    memory::Category was = category_.exchange(c, std::memory_order_relaxed);
    memory::count_move(device_.type, was, c, int64_t(nbytes_));
  }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  std::function<void(void*)> deleter_;
  std::atomic<memory::Category> category_{memory::Category::other};
  bool counted_ = false;
};

// CPU memory is 64-byte aligned (whole cache lines, aligned vector loads). CUDA memory comes
// from the caching allocator, so steady-state training does no cudaMalloc.
std::shared_ptr<Storage> allocate(size_t nbytes, Device device);

}  // namespace fathom
