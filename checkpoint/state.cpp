#include "fathom/checkpoint/state.h"

#include <cstring>

#include "fathom/checkpoint/format.h"
#include "fathom/core/dtype.h"

namespace fathom::checkpoint {

uint64_t state_hash(const nn::StateDict& state) {
  internal::Xxh3 h;
  auto put = [&h](const void* p, size_t n) { h.update(p, n); };
  for (const auto& [name, t] : state) {
    uint64_t len = name.size();
    put(&len, sizeof len);
    put(name.data(), name.size());
    const char* dt = dtype_name(t.dtype());
    put(dt, std::strlen(dt) + 1);
    int64_t dims = t.dim();
    put(&dims, sizeof dims);
    for (int64_t d : t.shape()) put(&d, sizeof d);
    Tensor c = t.to(Device::cpu()).contiguous();
    put(c.data_ptr(), size_t(c.nbytes()));
  }
  return h.digest();
}

}  // namespace fathom::checkpoint
