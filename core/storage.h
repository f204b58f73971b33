#pragma once
// A refcounted block of memory on one device. Tensors (and their views) share one Storage.
#include <cstddef>
#include <functional>
#include <memory>

#include "fathom/core/device.h"

namespace fathom {

class Storage {
 public:
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
      : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}
  ~Storage() {
    if (deleter_) deleter_(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  std::function<void(void*)> deleter_;
};

// CPU memory is 64-byte aligned (whole cache lines, aligned vector loads). CUDA memory comes
// from the caching allocator, so steady-state training does no cudaMalloc.
std::shared_ptr<Storage> allocate(size_t nbytes, Device device);

}  // namespace fathom
