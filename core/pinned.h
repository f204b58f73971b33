#pragma once
// Host memory for staging copies from and to CUDA devices (checkpoint snapshots): page-locked
// with cudaHostAlloc when this build has CUDA and a device is visible, so a device-to-host copy
// is one DMA at the bus's speed instead of the driver's double copy through its own pinned
// bounce buffer; ordinary host memory otherwise. Either way a Storage on Device::cpu(), counted
// in the memory ledger like any host allocation. Pinning is slow (page-locking every page) and
// takes memory from the OS for good while it lives: allocate once and reuse.
#include <cstddef>
#include <memory>

#include "fathom/core/storage.h"

namespace fathom {

std::shared_ptr<Storage> allocate_pinned(size_t nbytes);
// Whether `p` lies in page-locked host memory that CUDA knows of (false in a CPU-only build).
bool is_pinned(const void* p);

}  // namespace fathom
