#pragma once
// The CUDA runtime layer of the backend: error checks, the per-device compute stream, cuBLAS(Lt)
// handles and their workspace. Compiled only when FATHOM_WITH_CUDA (core/cuda/ is not built
// otherwise); code above core reaches CUDA through fathom::cuda functions, never raw handles.
//
// Streams: every kernel of the backend runs on one compute stream per device, returned by
// current_stream(). It is a stream of our own, created lazily with cudaStreamDefault flags,
// not the legacy default stream, because:
//  - work on it can be captured into CUDA graphs (the legacy stream cannot be captured), and a
//    communication stream created cudaStreamNonBlocking (comm/) can overlap with it;
//  - it still synchronizes with the legacy default stream, so a stray cudaMemcpy or a library
//    launching on stream 0 is ordered with our kernels instead of racing them.
// The caching allocator relies on this single stream per device (see allocator.cpp): a tensor
// used on any other stream must be kept alive until that stream's work is done.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "fathom/core/error.h"

namespace fathom::cuda {

namespace detail {
[[noreturn]] void cuda_failed(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void cublas_failed(cublasStatus_t st, const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace fathom::cuda

// Each throws fathom::Error naming the call, file:line and the library's own message.
#define FATHOM_CUDA_CHECK(expr)                                                            \
  do {                                                                                     \
    cudaError_t fathom_err_ = (expr);                                                      \
    if (fathom_err_ != cudaSuccess)                                                        \
      ::fathom::cuda::detail::cuda_failed(fathom_err_, #expr, __FILE__, __LINE__);         \
  } while (0)
#define FATHOM_CUBLAS_CHECK(expr)                                                          \
  do {                                                                                     \
    cublasStatus_t fathom_st_ = (expr);                                                    \
    if (fathom_st_ != CUBLAS_STATUS_SUCCESS)                                               \
      ::fathom::cuda::detail::cublas_failed(fathom_st_, #expr, __FILE__, __LINE__);        \
  } while (0)
// After a <<<...>>> launch: catches a bad launch configuration at the call that made it.
#define FATHOM_CUDA_CHECK_LAUNCH() FATHOM_CUDA_CHECK(cudaGetLastError())

namespace fathom::cuda {

// Throws naming `op` unless `index` is a visible device.
void check_device(int index, const char* op);

// Makes `index` the current device for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  int index_ = -1;
};

// The compute stream of a device (see the head of this file).
cudaStream_t current_stream(int device);
// Waits for everything queued on the device's compute stream.
void synchronize(int device);

int sm_count(int device);
std::string device_name(int device);

// cuBLASLt and classic cuBLAS handles of a device, created on first use, bound to its compute
// stream; both share one workspace (they only run in that stream's order).
cublasLtHandle_t lt_handle(int device);
cublasHandle_t blas_handle(int device);
void* blas_workspace(int device, size_t* nbytes);

// f32 matmul uses TF32 tensor cores only when allowed (off by default: results then match the
// CPU to f32 rounding). Like torch.backends.cuda.matmul.allow_tf32.
void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace fathom::cuda
