// CUDA pooling and training-mode batch norm through cuDNN, on the NCHW tensors as they come.
// Max pooling uses cuDNN's deterministic mode; its backward reads x and y, so forward returns
// no workspace. Batch norm: cudnnBatchNormalizationForwardTraining with an averaging factor of
// 1 makes its "running" outputs the batch mean and the unbiased variance (what the contract
// asks for), and its saved outputs the mean and invstd backward reads.
#include "fathom/core/backend.h"
#include "fathom/core/cuda/cudnn.h"
#include "fathom/core/cuda/runtime.h"
#include "fathom/core/ops/factory.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace fathom::cuda {

namespace {

cudnnPoolingMode_t mode_of(PoolKind k) {
  switch (k) {
    case PoolKind::max: return CUDNN_POOLING_MAX_DETERMINISTIC;
    case PoolKind::avg_include_pad: return CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    case PoolKind::avg_exclude_pad: return CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  }
  fathom::detail::fail("pool2d: unknown pooling kind");
}

struct PoolDesc {
  cudnnPoolingDescriptor_t d = nullptr;
  explicit PoolDesc(const PoolParams& p) {
    FATHOM_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&d));
    FATHOM_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
        d, mode_of(p.kind), CUDNN_PROPAGATE_NAN, int(p.kernel[0]), int(p.kernel[1]),
        int(p.padding[0]), int(p.padding[1]), int(p.stride[0]), int(p.stride[1])));
  }
  ~PoolDesc() { cudnnDestroyPoolingDescriptor(d); }
  PoolDesc(const PoolDesc&) = delete;
  PoolDesc& operator=(const PoolDesc&) = delete;
};

// A 4-d NCHW descriptor of t; [N, C, S] tensors are [N, C, S, 1].
void describe(TensorDesc& d, const Tensor& t, const char* op) {
  d.set(CUDNN_TENSOR_NCHW, cudnn_dtype(t.dtype(), op), t.size(0), t.size(1), t.size(2),
        t.dim() == 4 ? t.size(3) : 1);
}

struct Scalars {
  float f1 = 1, f0 = 0;
  double d1 = 1, d0 = 0;
  bool dbl;
  explicit Scalars(DType t) : dbl(t == DType::f64) {}
  const void* one() const { return dbl ? static_cast<const void*>(&d1) : &f1; }
  const void* zero() const { return dbl ? static_cast<const void*>(&d0) : &f0; }
};

}  // namespace

Tensor pool2d(const Tensor& x, const PoolParams& p, const Tensor& y) {
  int dev = x.device().index;
  DeviceGuard g(dev);
  TensorDesc xd, yd;
  describe(xd, x, "pool2d");
  describe(yd, y, "pool2d");
  PoolDesc pd(p);
  Scalars s(x.dtype());
  FATHOM_CUDNN_CHECK(cudnnPoolingForward(cudnn_handle(dev), pd.d, s.one(), xd.d, x.data_ptr(),
                                         s.zero(), yd.d, y.data_ptr()));
  return Tensor();
}

void pool2d_backward(const Tensor& grad_y, const Tensor& x, const Tensor& y,
                     const Tensor& workspace, const PoolParams& p, const Tensor& grad_x) {
  int dev = x.device().index;
  DeviceGuard g(dev);
  TensorDesc xd, yd;
  describe(xd, x, "pool2d_backward");
  describe(yd, y, "pool2d_backward");
  PoolDesc pd(p);
  Scalars s(x.dtype());
  FATHOM_CUDNN_CHECK(cudnnPoolingBackward(cudnn_handle(dev), pd.d, s.one(), yd.d, y.data_ptr(),
                                          yd.d, grad_y.data_ptr(), xd.d, x.data_ptr(), s.zero(),
                                          xd.d, grad_x.data_ptr()));
}

namespace {

void check_eps(double eps) {
  FATHOM_CHECK(eps >= CUDNN_BN_MIN_EPSILON, "batch_norm: eps ", eps, " is below cuDNN's minimum ",
               CUDNN_BN_MIN_EPSILON, " on CUDA");
}

// weight/bias, or 1/0 when undefined: cuDNN always reads both.
Tensor or_fill(const Tensor& t, int64_t C, DType dt, Device dev, double v) {
  return t.defined() ? t : full({C}, v, {dt, dev});
}

}  // namespace

void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& var, const Tensor& invstd) {
  check_eps(eps);
  int dev = x.device().index;
  DeviceGuard g(dev);
  TensorDesc xd, cd;
  describe(xd, x, "batch_norm");
  FATHOM_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(cd.d, xd.d, CUDNN_BATCHNORM_SPATIAL));
  int64_t C = x.size(1);
  Tensor w = or_fill(weight, C, mean.dtype(), x.device(), 1.0);
  Tensor b = or_fill(bias, C, mean.dtype(), x.device(), 0.0);
  Tensor saved_mean = empty({C}, mean.options());
  Scalars s(x.dtype());
  // Averaging factor 1: running = batch, so mean and var receive the batch's statistics.
  FATHOM_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      cudnn_handle(dev), CUDNN_BATCHNORM_SPATIAL, s.one(), s.zero(), xd.d, x.data_ptr(), xd.d,
      y.data_ptr(), cd.d, w.data_ptr(), b.data_ptr(), 1.0, mean.data_ptr(), var.data_ptr(), eps,
      saved_mean.data_ptr(), invstd.data_ptr()));
}

void batch_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& var, const Tensor& invstd,
                         double eps, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  check_eps(eps);
  int dev = x.device().index;
  DeviceGuard g(dev);
  TensorDesc xd, cd;
  describe(xd, x, "batch_norm_backward");
  FATHOM_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(cd.d, xd.d, CUDNN_BATCHNORM_SPATIAL));
  int64_t C = x.size(1);
  Tensor w = or_fill(weight, C, mean.dtype(), x.device(), 1.0);
  Tensor gw = grad_weight.defined() ? grad_weight : empty({C}, mean.options());
  Tensor gb = grad_bias.defined() ? grad_bias : empty({C}, mean.options());
  Scalars s(x.dtype());
  FATHOM_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      cudnn_handle(dev), CUDNN_BATCHNORM_SPATIAL, s.one(), s.zero(), s.one(), s.zero(), xd.d,
      x.data_ptr(), xd.d, grad_y.data_ptr(), xd.d, grad_x.data_ptr(), cd.d, w.data_ptr(),
      gw.data_ptr(), gb.data_ptr(), eps, mean.data_ptr(), invstd.data_ptr()));
}

}  // namespace fathom::cuda
