#include "fathom/core/cuda/cudnn.h"

#include <mutex>
#include <unordered_map>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cuda/runtime.h"

// The legacy API is deprecated in cuDNN 9 (cudnn.h says so on every declaration).
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace fathom::cuda {

namespace detail {
void cudnn_failed(cudnnStatus_t st, const char* expr, const char* file, int line) {
  fathom::detail::fail("cuDNN error at ", file, ":", line, ": ", expr, " failed with ",
                       cudnnGetErrorString(st));
}
}  // namespace detail

cudnnHandle_t cudnn_handle(int device) {
  static std::mutex mu;
  static std::unordered_map<int, cudnnHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cudaStream_t stream = current_stream(device);
  DeviceGuard g(device);
  cudnnHandle_t h;
  FATHOM_CUDNN_CHECK(cudnnCreate(&h));
  FATHOM_CUDNN_CHECK(cudnnSetStream(h, stream));
  handles.emplace(device, h);
  return h;
}

cudnnDataType_t cudnn_dtype(DType t, const char* op) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    case DType::f16: return CUDNN_DATA_HALF;
    default: fathom::detail::fail(op, ": cuDNN has no ", dtype_name(t), " kernels");
  }
}

Workspace::Workspace(size_t bytes, int device) {
  if (bytes == 0) return;
  storage = allocate(bytes, device);
  ptr = storage->data();
}

std::shared_ptr<void> cudnn_cached(const std::string& key,
                                   const std::function<std::shared_ptr<void>()>& make) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<void>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  return cache.emplace(key, make()).first->second;
}

}  // namespace fathom::cuda
