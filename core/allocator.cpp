#include <cstdlib>

#include "core/backend.h"

namespace fathom {

std::shared_ptr<Storage> allocate(size_t nbytes, Device device) {
  return FATHOM_DISPATCH(device, allocate, nbytes, device.index);
}

namespace cpu {
std::shared_ptr<Storage> allocate(size_t nbytes, int) {
  // 64-byte alignment: whole cache lines and aligned AVX-512 loads; aligned_alloc needs a
  // multiple of the alignment.
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  FATHOM_CHECK(p || !rounded, "allocate: out of host memory asking for ", nbytes, " bytes");
  return std::make_shared<Storage>(p, nbytes, Device::cpu(), [](void* q) { std::free(q); });
}
}  // namespace cpu

#if !FATHOM_WITH_CUDA
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
#endif

}  // namespace fathom
