#pragma once
// The caching device allocator (allocator.cpp). cuda::allocate (core/backend_api.inc) hands out
// blocks from it; these functions inspect and trim it. Plain C++ (no CUDA headers), so tests
// and tools can include it in a CUDA build without nvcc.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "fathom/core/storage.h"

namespace fathom::cuda {

struct AllocatorStats {
  size_t allocated_bytes = 0;       // held by live Storages (rounded block sizes)
  size_t cached_bytes = 0;          // free blocks kept for reuse
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes
  uint64_t num_allocs = 0;          // allocate() calls that returned a block
  uint64_t num_cuda_mallocs = 0;    // of those, how many needed a cudaMalloc
  uint64_t num_cuda_frees = 0;      // blocks given back to the driver (empty_cache, OOM retry)
};

AllocatorStats allocator_stats(int device);

// Page-locked host memory (cudaHostAlloc, portable to every device), outside the caching
// allocator: a Storage on Device::cpu() whose deleter calls cudaFreeHost. See core/pinned.h.
std::shared_ptr<Storage> allocate_pinned_host(size_t nbytes);
bool is_pinned_host(const void* p);
// Returns every cached (free) block of the device to the driver. Blocks in use are untouched.
void empty_cache(int device);

}  // namespace fathom::cuda
