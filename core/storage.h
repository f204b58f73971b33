#pragma once
// A refcounted block of memory on one device. Tensors (and their views) share one Storage.
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
    if (counted_) memory::count_free(device_.type, category_, int64_t(nbytes_));
    if (deleter_) deleter_(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // The ledger category allocate() counted this block under (memory.h).
  memory::Category category() const { return category_; }
  // Called once by allocate(): counts the block in the ledger until the Storage dies.
  void count_in_ledger(memory::Category c) {
    category_ = c;
    counted_ = true;
    memory::count_allocation(device_.type, c, int64_t(nbytes_));
  }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  std::function<void(void*)> deleter_;
  memory::Category category_ = memory::Category::other;
  bool counted_ = false;
};

// CPU memory is 64-byte aligned (whole cache lines, aligned vector loads). CUDA memory comes
// from the caching allocator, so steady-state training does no cudaMalloc.
std::shared_ptr<Storage> allocate(size_t nbytes, Device device);

}  // namespace fathom
