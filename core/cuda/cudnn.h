#pragma once
// cuDNN for the CUDA convolution, pooling and batch-norm kernels (conv.cpp, pool_bn.cpp): the
// check macro, one handle per device bound to its compute stream, descriptors that free
// themselves, and the plan cache. cuDNN 9 marks this (the "legacy") API deprecated but keeps
// it; the graph API would be the way forward (docs/conv.md).
#include <cudnn.h>

#include <functional>
#include <memory>
#include <string>

#include "fathom/core/tensor.h"

namespace fathom::cuda {

namespace detail {
[[noreturn]] void cudnn_failed(cudnnStatus_t st, const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace fathom::cuda

#define FATHOM_CUDNN_CHECK(expr)                                                     \
  do {                                                                               \
    cudnnStatus_t fathom_st_ = (expr);                                               \
    if (fathom_st_ != CUDNN_STATUS_SUCCESS)                                          \
      ::fathom::cuda::detail::cudnn_failed(fathom_st_, #expr, __FILE__, __LINE__);   \
  } while (0)

namespace fathom::cuda {

// The device's cuDNN handle, created on first use, on its compute stream.
cudnnHandle_t cudnn_handle(int device);

cudnnDataType_t cudnn_dtype(DType t, const char* op);

// RAII descriptors.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { FATHOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  // dims n, c, h, w of a tensor stored NCHW or NHWC.
  void set(cudnnTensorFormat_t f, cudnnDataType_t t, int64_t n, int64_t c, int64_t h, int64_t w) {
    FATHOM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, f, t, int(n), int(c), int(h), int(w)));
  }
};

// Workspace from Fathom's caching allocator (cuda::allocate), freed into its cache at scope
// end: ordered after the kernels that use it on the one compute stream.
struct Workspace {
  std::shared_ptr<Storage> storage;
  void* ptr = nullptr;
  Workspace(size_t bytes, int device);
};

// The plan cached under key (built by make on first use; thread-safe).
std::shared_ptr<void> cudnn_cached(const std::string& key,
                                   const std::function<std::shared_ptr<void>()>& make);

}  // namespace fathom::cuda
