// Caching device allocator, like PyTorch's: a Storage's deleter returns its block to a
// per-device free list instead of cudaFree, and allocate() reuses the best-fitting cached block,
// so a training loop that asks for the same sizes every step does no cudaMalloc after the first
// (cudaMalloc and cudaFree synchronize the device and cost milliseconds).
//
// Stream ordering: a block goes back to the cache as soon as its Storage dies, possibly while
// kernels queued earlier still read or write it. That is safe because every kernel of this
// backend runs on one compute stream per device (runtime.h): whoever gets the block next
// queues its work on the same stream, after those kernels. Work on another stream (NCCL on a
// communication stream) must keep its tensors alive until it is done, as with PyTorch's
// record_stream.
//
// Sizes: requests up to 1 MiB are rounded to 512 B and kept in a small pool, larger ones to
// 2 MiB in a large pool, so that blocks of nearby sizes are interchangeable. A cached block is
// reused for a request it fits with at most a quarter (or one rounding step) to spare; blocks
// are not split (simpler; the OOM path below gives waste back).
#include <algorithm>
#include <cstdio>
#include <array>
#include <map>
#include <memory>
#include <mutex>

#include "fathom/core/backend.h"
#include "fathom/core/cuda/allocator.h"
#include "fathom/core/cuda/runtime.h"

namespace fathom::cuda {

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;
constexpr int kMaxDevices = 64;

size_t round_size(size_t n) {
  size_t r = n <= kSmallLimit ? kSmallRound : kLargeRound;
  return (n + r - 1) / r * r;
}

class DeviceCache {
 public:
  explicit DeviceCache(int device) : device_(device) {}

  // Returns a block of at least `size` (already rounded) bytes; *block_size gets its real size.
  void* take(size_t size, size_t* block_size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& pool = size <= kSmallLimit ? small_ : large_;
    size_t step = size <= kSmallLimit ? kSmallRound : kLargeRound;
    void* p = nullptr;
    auto it = pool.lower_bound(size);  // best fit: the smallest cached block that is big enough
    if (it != pool.end() && it->first <= size + std::max(size / 4, step)) {
      p = it->second;
      *block_size = it->first;
      cached_ -= it->first;
      pool.erase(it);
    } else {
      p = cuda_malloc(size);
      *block_size = size;
    }
    allocated_ += *block_size;
    peak_ = std::max(peak_, allocated_);
    ++num_allocs_;
    return p;
  }

  // The Storage deleter: back to the free list. Runs in destructors, so it never throws.
  void give_back(void* p, size_t block_size) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    allocated_ -= block_size;
    cached_ += block_size;
    (block_size <= kSmallLimit ? small_ : large_).emplace(block_size, p);
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    free_cached_locked();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    AllocatorStats s;
    s.allocated_bytes = allocated_;
    s.cached_bytes = cached_;
    s.peak_allocated_bytes = peak_;
    s.num_allocs = num_allocs_;
    s.num_cuda_mallocs = num_mallocs_;
    s.num_cuda_frees = num_frees_;
    return s;
  }

 private:
  // With mu_ held. On out-of-memory, gives every cached block back to the driver and tries
  // again before failing with what is allocated and cached.
  void* cuda_malloc(size_t size) {
    DeviceGuard g(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation && cached_ > 0) {
      (void)cudaGetLastError();
      free_cached_locked();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      fathom::detail::fail("CUDA out of memory: allocating ", size, " bytes on cuda:", device_,
                           " failed (", cudaGetErrorString(e), "); ", allocated_,
                           " bytes are held by tensors, ", cached_,
                           " bytes cached by Fathom, the device reports ", free_b, " of ",
                           total_b, " bytes free. Free tensors, or use smaller batches");
    }
    ++num_mallocs_;
    return p;
  }

  void free_cached_locked() {
    DeviceGuard g(device_);
    // cudaFree synchronizes the device first, so kernels still using a block (queued before
    // its Storage died) finish before the memory goes back to the driver.
    for (auto* pool : {&small_, &large_}) {
      for (auto& [size, p] : *pool) {
        FATHOM_CUDA_CHECK(cudaFree(p));
        cached_ -= size;
        ++num_frees_;
      }
      pool->clear();
    }
  }

  int device_;
  std::mutex mu_;
  std::multimap<size_t, void*> small_, large_;  // block size -> pointer
  size_t allocated_ = 0, cached_ = 0, peak_ = 0;
  uint64_t num_allocs_ = 0, num_mallocs_ = 0, num_frees_ = 0;
};

// Never destroyed: Storages may die after main() returns (static tensors), and must still find
// their cache. The driver reclaims device memory at process exit.
DeviceCache& cache(int device, const char* op) {
  static std::array<DeviceCache*, kMaxDevices>* caches = [] {
    auto* a = new std::array<DeviceCache*, kMaxDevices>();
    for (int i = 0; i < kMaxDevices; ++i) (*a)[i] = new DeviceCache(i);
    return a;
  }();
  check_device(device, op);
  FATHOM_CHECK(device < kMaxDevices, op, ": cuda:", device, " is past the ", kMaxDevices,
               " devices Fathom supports");
  return *(*caches)[device];
}

}  // namespace

std::shared_ptr<Storage> allocate(size_t nbytes, int device) {
  Device dev = Device::cuda(device);
  if (nbytes == 0) {
    check_device(device, "allocate");
    return std::make_shared<Storage>(nullptr, 0, dev, nullptr);
  }
  DeviceCache& c = cache(device, "allocate");
  size_t block = 0;
  void* p = c.take(round_size(nbytes), &block);
  return std::make_shared<Storage>(p, nbytes, dev,
                                   [&c, block](void* q) { c.give_back(q, block); });
}

AllocatorStats allocator_stats(int device) { return cache(device, "allocator_stats").stats(); }

void empty_cache(int device) { cache(device, "empty_cache").empty(); }

std::shared_ptr<Storage> allocate_pinned_host(size_t nbytes) {
  void* p = nullptr;
  if (nbytes > 0) {
    cudaError_t err = cudaHostAlloc(&p, nbytes, cudaHostAllocPortable);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it so the next call does not see it
      fathom::detail::fail("allocate_pinned: cudaHostAlloc of ", nbytes, " bytes failed: ",
                           cudaGetErrorString(err),
                           " (page-locked memory is limited by RAM and `ulimit -l`)");
    }
  }
  return std::make_shared<Storage>(p, nbytes, Device::cpu(), [](void* q) {
    if (!q) return;
    cudaError_t err = cudaFreeHost(q);
    // A deleter cannot throw; the error is said, not swallowed.
    if (err != cudaSuccess && err != cudaErrorCudartUnloading)
      std::fprintf(stderr, "fathom: cudaFreeHost failed: %s\n", cudaGetErrorString(err));
  });
}

bool is_pinned_host(const void* p) {
  cudaPointerAttributes a{};
  cudaError_t err = cudaPointerGetAttributes(&a, p);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}

}  // namespace fathom::cuda
