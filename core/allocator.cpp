#include <malloc.h>

#include <cstdint>
#include <cstdlib>

#include "fathom/core/backend.h"
#include "fathom/core/phase.h"
#include "fathom/core/pinned.h"
#if FATHOM_WITH_CUDA
#include "fathom/core/cuda/allocator.h"
#endif

namespace fathom {

std::shared_ptr<Storage> allocate(size_t nbytes, Device device) {
  // Both backends round the request up (to 64 B, to 512 B or 2 MiB blocks): bounded here, the
  // rounding cannot wrap a huge request around to a tiny block.
  FATHOM_CHECK(nbytes <= size_t(INT64_MAX), "allocate: ", nbytes, " bytes on ", device.str(),
               " is more than any device holds (over 2^63)");
  phase::Scope phase_scope(phase::Phase::alloc);
  std::shared_ptr<Storage> s = FATHOM_DISPATCH(device, allocate, nbytes, device.index);
  s->count_in_ledger(memory::current_category());
  return s;
}

namespace cpu {
// glibc serves blocks above 128 KB with mmap and unmaps them on free, so every activation of a
// training step came back as fresh pages: measured 1.9 us per 4 KB page fault here, most of a
// small MLP's step. Keeping big blocks in the heap (and the heap untrimmed) makes steady-state
// training reuse the same warm pages, the CPU analogue of the CUDA caching allocator.
static void keep_freed_memory() {
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)once;
}

std::shared_ptr<Storage> allocate(size_t nbytes, int) {
  keep_freed_memory();
  // 64-byte alignment: whole cache lines and aligned AVX-512 loads; aligned_alloc needs a
  // multiple of the alignment.
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  FATHOM_CHECK(p || !rounded, "allocate: out of host memory asking for ", nbytes, " bytes");
  return std::make_shared<Storage>(p, nbytes, Device::cpu(), [](void* q) {
    phase::Scope phase_scope(phase::Phase::alloc);
    std::free(q);
  });
}
}  // namespace cpu

std::shared_ptr<Storage> allocate_pinned(size_t nbytes) {
  FATHOM_CHECK(nbytes <= size_t(INT64_MAX), "allocate_pinned: ", nbytes,
               " bytes is more than any host holds (over 2^63)");
  phase::Scope phase_scope(phase::Phase::alloc);
#if FATHOM_WITH_CUDA
  std::shared_ptr<Storage> s =
      cuda_available() ? cuda::allocate_pinned_host(nbytes) : cpu::allocate(nbytes, 0);
#else
  std::shared_ptr<Storage> s = cpu::allocate(nbytes, 0);
#endif
  s->count_in_ledger(memory::current_category());
  return s;
}

#if FATHOM_WITH_CUDA
bool is_pinned(const void* p) { return cuda_available() && cuda::is_pinned_host(p); }
#else
bool is_pinned(const void*) { return false; }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
#endif

}  // namespace fathom
