// CUDA runtime layer: device discovery, error messages, per-device stream and library handles.
#include "fathom/core/cuda/runtime.h"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>

#include "fathom/core/backend.h"

namespace fathom {

// Declared in core/device.h; a CPU-only build defines them in core/allocator.cpp. Never throws:
// a machine without a driver or a device is simply "no CUDA".
int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear it, so the next checked call does not see it
      return 0;
    }
    return n;
  }();
  return count;
}

bool cuda_available() { return cuda_device_count() > 0; }

namespace cuda {

namespace detail {
void cuda_failed(cudaError_t err, const char* expr, const char* file, int line) {
  // Clear a non-sticky error so later calls do not report it again.
  (void)cudaGetLastError();
  fathom::detail::fail("CUDA error at ", file, ":", line, ": ", expr, " failed with ",
                       cudaGetErrorName(err), ": ", cudaGetErrorString(err));
}
void cublas_failed(cublasStatus_t st, const char* expr, const char* file, int line) {
  fathom::detail::fail("cuBLAS error at ", file, ":", line, ": ", expr, " failed with ",
                       cublasGetStatusName(st), ": ", cublasGetStatusString(st));
}
}  // namespace detail

void check_device(int index, const char* op) {
  int n = cuda_device_count();
  FATHOM_CHECK(n > 0, op, ": a CUDA tensor was requested but no CUDA device is visible "
                          "(check the driver and CUDA_VISIBLE_DEVICES)");
  FATHOM_CHECK(index >= 0 && index < n, op, ": device cuda:", index, " does not exist (", n,
               n == 1 ? " device is" : " devices are", " visible)");
}

DeviceGuard::DeviceGuard(int index) : index_(index) {
  FATHOM_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != index_) FATHOM_CUDA_CHECK(cudaSetDevice(index_));
}

DeviceGuard::~DeviceGuard() {
  if (prev_ != index_) (void)cudaSetDevice(prev_);  // a destructor must not throw
}

namespace {

constexpr int kMaxDevices = 64;
// 32 MiB: what cuBLAS recommends for Hopper (and PyTorch uses) so Lt can pick split-K and
// stream-K kernels that need scratch.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

// Created lazily; never destroyed: a static destructor would run after the driver may have
// shut down, and Storages outliving main() still point here.
struct DeviceState {
  std::once_flag stream_once, blas_once, props_once;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  std::shared_ptr<Storage> workspace;
  int sm_count = 0;
  std::string name;
};

DeviceState& state(int device, const char* op) {
  static std::array<DeviceState, kMaxDevices>* states = new std::array<DeviceState, kMaxDevices>();
  check_device(device, op);
  FATHOM_CHECK(device < kMaxDevices, op, ": cuda:", device, " is past the ", kMaxDevices,
               " devices Fathom supports");
  return (*states)[device];
}

std::atomic<bool> g_allow_tf32{false};

}  // namespace

cudaStream_t current_stream(int device) {
  DeviceState& s = state(device, "current_stream");
  std::call_once(s.stream_once, [&] {
    DeviceGuard g(device);
    FATHOM_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamDefault));
  });
  return s.stream;
}

void synchronize(int device) {
  cudaStream_t st = current_stream(device);
  DeviceGuard g(device);
  FATHOM_CUDA_CHECK(cudaStreamSynchronize(st));
}

static void load_props(DeviceState& s, int device) {
  std::call_once(s.props_once, [&] {
    cudaDeviceProp p{};
    FATHOM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    s.sm_count = p.multiProcessorCount;
    s.name = p.name;
  });
}

int sm_count(int device) {
  DeviceState& s = state(device, "sm_count");
  load_props(s, device);
  return s.sm_count;
}

std::string device_name(int device) {
  DeviceState& s = state(device, "device_name");
  load_props(s, device);
  return s.name;
}

static DeviceState& blas_state(int device) {
  DeviceState& s = state(device, "matmul");
  std::call_once(s.blas_once, [&] {
    cudaStream_t stream = current_stream(device);
    DeviceGuard g(device);
    s.workspace = allocate(kWorkspaceBytes, device);
    FATHOM_CUBLAS_CHECK(cublasLtCreate(&s.lt));
    FATHOM_CUBLAS_CHECK(cublasCreate(&s.blas));
    FATHOM_CUBLAS_CHECK(cublasSetStream(s.blas, stream));
    FATHOM_CUBLAS_CHECK(cublasSetWorkspace(s.blas, s.workspace->data(), kWorkspaceBytes));
    // Classic cuBLAS only serves f64 and the rare shapes Lt has no algorithm for; keep its
    // own math exact too (no TF32 unless asked, per call).
    FATHOM_CUBLAS_CHECK(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH));
  });
  return s;
}

cublasLtHandle_t lt_handle(int device) { return blas_state(device).lt; }
cublasHandle_t blas_handle(int device) { return blas_state(device).blas; }

void* blas_workspace(int device, size_t* nbytes) {
  DeviceState& s = blas_state(device);
  *nbytes = kWorkspaceBytes;
  return s.workspace->data();
}

void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace cuda
}  // namespace fathom
