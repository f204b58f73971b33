#pragma once
// Declares the backends' kernels (core/backend_api.inc) and FATHOM_DISPATCH, the one place an
// op chooses its backend. A CPU-only build has no fathom::cuda symbols: there the CUDA branch
// is a clear error, and callers never see an #ifdef.
#include <memory>

#include <vector>

#include "fathom/core/ops/compress.h"
#include "fathom/core/ops/conv.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/optim.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom {
namespace cpu {
#include "fathom/core/backend_api.inc"
}
#if FATHOM_WITH_CUDA
namespace cuda {
#include "fathom/core/backend_api.inc"
}
#endif

namespace detail {
template <class R>
[[noreturn]] R no_cuda(const char* op) {
  fail(op, ": got a CUDA tensor, but this build of Fathom has no CUDA backend "
           "(rebuild with -DFATHOM_CUDA=ON on a machine with the CUDA toolkit)");
}
}  // namespace detail
}  // namespace fathom

// FATHOM_DISPATCH(device, kernel, args...) calls cpu::kernel or cuda::kernel.
#if FATHOM_WITH_CUDA
#define FATHOM_DISPATCH(dev, kernel, ...) \
  ((dev).is_cuda() ? ::fathom::cuda::kernel(__VA_ARGS__) : ::fathom::cpu::kernel(__VA_ARGS__))
#else
#define FATHOM_DISPATCH(dev, kernel, ...)                                                \
  ((dev).is_cuda() ? ::fathom::detail::no_cuda<decltype(::fathom::cpu::kernel(__VA_ARGS__))>( \
                         #kernel)                                                         \
                   : ::fathom::cpu::kernel(__VA_ARGS__))
#endif
