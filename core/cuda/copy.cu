// CUDA copy (any strides, any dtype pair), fill, where, and byte copies across the host/device
// boundary. Kernels come from the elementwise engine in loops.cuh; this file has the functors
// and launchers.
#include <cstring>

#include "fathom/core/cuda/loops.cuh"

namespace fathom::cuda {

// ---- functors ----

// D from S as the CPU converts: through S's compute type, rounding once into D.
template <class D, class S>
struct CopyG {
  __device__ __forceinline__ D operator()(S x) const {
    if constexpr (std::is_same_v<D, S>) return x;
    else return cvt<D>(to_c(x));
  }
};

template <class T>
struct ConstG {
  T v;
  __device__ __forceinline__ T operator()() const { return v; }
};

template <class T>
struct WhereG {
  __device__ __forceinline__ T operator()(bool c, T a, T b) const { return c ? a : b; }
};

// ---- launchers ----

void copy(const Tensor& dst, const Tensor& src) {
  FATHOM_CHECK(dst.shape() == src.shape() && dst.device() == src.device(), "copy: dst ",
               dst.desc(), " and src ", src.desc(), " must have one shape and one device");
  if (dst.numel() == 0) return;
  Launch L(dst);
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    // Same bytes in the same order: the copy engine's memcpy is as fast as any kernel.
    if (dst.data_ptr() != src.data_ptr())
      FATHOM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(),
                                        cudaMemcpyDeviceToDevice, L.stream));
    return;
  }
  dispatch_all(dst.dtype(), "copy", [&]<class D>() {
    dispatch_all(src.dtype(), "copy", [&]<class S>() {
      Map1<D, S, CopyG<D, S>> m{ptr<D>(dst), ptr<const S>(src), {}};
      launch_map("copy", dst.shape(), {&dst.strides(), &src.strides()}, m, L);
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  Launch L(dst);
  dispatch_all(dst.dtype(), "fill", [&]<class T>() {
    T v = host_value<T>(value);
    unsigned char zero[sizeof(T)] = {};
    if (dst.is_contiguous() && std::memcmp(&v, zero, sizeof(T)) == 0) {
      // All-zero bit pattern (0, +0.0, false): memset runs at full bandwidth.
      FATHOM_CUDA_CHECK(cudaMemsetAsync(dst.data_ptr(), 0, dst.nbytes(), L.stream));
      return;
    }
    Map0<T, ConstG<T>> m{ptr<T>(dst), ConstG<T>{v}};
    launch_map("fill", dst.shape(), {&dst.strides()}, m, L);
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  FATHOM_CHECK(cond.dtype() == DType::boolean && a.dtype() == out.dtype() &&
                   b.dtype() == out.dtype(),
               "where: cond ", cond.desc(), ", a ", a.desc(), ", b ", b.desc(), ", out ",
               out.desc(), ": expected a bool condition and one dtype for a, b and out");
  if (out.numel() == 0) return;
  Launch L(out);
  dispatch_all(out.dtype(), "where", [&]<class T>() {
    Map3<T, bool, T, T, WhereG<T>> m{ptr<T>(out), ptr<const bool>(cond), ptr<const T>(a),
                                     ptr<const T>(b), {}};
    launch_map("where", out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()},
               m, L);
  });
}

// Synchronous with respect to the host, like cudaMemcpy: when it returns the bytes have
// landed, so a host buffer may be freed or reused, and a source on another device may die.
// The copy is queued on the compute stream (not the legacy stream) so it is ordered after the
// kernels that produced the source.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device.index != src_device.index) synchronize(src_device.index);
    cudaStream_t stream = current_stream(dst_device.index);
    DeviceGuard g(dst_device.index);
    if (dst_device.index == src_device.index)
      FATHOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream));
    else
      FATHOM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes,
                                            stream));
    FATHOM_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  FATHOM_CHECK(dst_device.is_cuda() || src_device.is_cuda(),
               "copy_bytes: neither side is a CUDA device (", dst_device.str(), " <- ",
               src_device.str(), ")");
  int dev = dst_device.is_cuda() ? dst_device.index : src_device.index;
  cudaStream_t stream = current_stream(dev);
  DeviceGuard g(dev);
  cudaMemcpyKind kind = dst_device.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  FATHOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, stream));
  FATHOM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace fathom::cuda
