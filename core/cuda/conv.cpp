// CUDA convolution through cuDNN: forward, backward-data, backward-filter and the bias
// gradient. bf16 (and f16) run channels-last: x, y and the weight are copied to NHWC and the
// descriptors say so, the layout cuDNN's tensor-core kernels read; f32 and f64 stay NCHW with
// FMA math (no TF32, matching the CPU). Each shape's descriptors and its algorithms are a plan,
// built once and cached; an algorithm is found once per plan and direction (cudnnFind*, timed
// trials, the fastest deterministic one kept), and its workspace comes from Fathom's caching
// allocator at each call.
#include <mutex>
#include <string>

#include "fathom/core/backend.h"
#include "fathom/core/cuda/cudnn.h"
#include "fathom/core/cuda/runtime.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace fathom::cuda {

namespace {

bool channels_last(DType t) { return t == DType::bf16 || t == DType::f16; }

struct ConvPlan {
  TensorDesc x, y, b;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  std::mutex mu;
  bool has_fwd = false, has_data = false, has_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t data{};
  cudnnConvolutionBwdFilterAlgo_t filter{};
  size_t fwd_ws = 0, data_ws = 0, filter_ws = 0;
  ~ConvPlan() {
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

std::shared_ptr<ConvPlan> plan_for(const Shape& xs, const Shape& ws, const Shape& ys,
                                   const ConvParams& p, DType dt, int device) {
  std::string key = "conv";
  auto add = [&key](int64_t v) {
    key += '|';
    key += std::to_string(v);
  };
  for (const Shape* s : {&xs, &ws, &ys})
    for (int64_t v : *s) add(v);
  for (int64_t v : {p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.dilation[0],
                    p.dilation[1], p.groups, int64_t(dt), int64_t(device)})
    add(v);
  return std::static_pointer_cast<ConvPlan>(cudnn_cached(key, [&]() -> std::shared_ptr<void> {
    auto pl = std::make_shared<ConvPlan>();
    cudnnDataType_t t = cudnn_dtype(dt, "conv2d");
    cudnnTensorFormat_t f = channels_last(dt) ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    pl->x.set(f, t, xs[0], xs[1], xs[2], xs[3]);
    pl->y.set(f, t, ys[0], ys[1], ys[2], ys[3]);
    pl->b.set(f, t, 1, ys[1], 1, 1);
    FATHOM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl->w));
    FATHOM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl->w, t, f, int(ws[0]), int(ws[1]),
                                                  int(ws[2]), int(ws[3])));
    FATHOM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl->conv));
    FATHOM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        pl->conv, int(p.padding[0]), int(p.padding[1]), int(p.stride[0]), int(p.stride[1]),
        int(p.dilation[0]), int(p.dilation[1]), CUDNN_CROSS_CORRELATION,
        dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
    FATHOM_CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl->conv, int(p.groups)));
    FATHOM_CUDNN_CHECK(cudnnSetConvolutionMathType(
        pl->conv, channels_last(dt) ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    return pl;
  }));
}

// The fastest deterministic algorithm of a cudnnFind* result (sorted by time).
template <class Perf>
const Perf& pick(const Perf* perf, int n, const char* what) {
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC)
      return perf[i];
  fathom::detail::fail(what, ": cuDNN offers no deterministic algorithm for this shape");
}

constexpr int kAlgos = 16;

// x's data in the plan's layout: itself (NCHW) or a channels-last copy.
Tensor to_layout(const Tensor& t) {
  if (!channels_last(t.dtype())) return t;
  Tensor out = empty({t.size(0), t.size(2), t.size(3), t.size(1)}, t.options());
  copy(out, ops::permute(t, {0, 2, 3, 1}));
  return out;
}
// An output buffer in the plan's layout for the NCHW tensor t; finish() writes it back.
Tensor out_layout(const Tensor& t) {
  if (!channels_last(t.dtype())) return t;
  return empty({t.size(0), t.size(2), t.size(3), t.size(1)}, t.options());
}
void finish(const Tensor& t, const Tensor& used) {
  if (!used.is_same(t)) copy(t, ops::permute(used, {0, 3, 1, 2}));
}

// alpha = 1, beta = 0 (or 1) in the type cuDNN reads for the dtype.
struct Scalars {
  float f1 = 1, f0 = 0;
  double d1 = 1, d0 = 0;
  bool dbl;
  explicit Scalars(DType t) : dbl(t == DType::f64) {}
  const void* one() const { return dbl ? static_cast<const void*>(&d1) : &f1; }
  const void* zero() const { return dbl ? static_cast<const void*>(&d0) : &f0; }
};

}  // namespace

void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p,
            const Tensor& y) {
  int dev = x.device().index;
  auto pl = plan_for(x.shape(), weight.shape(), y.shape(), p, x.dtype(), dev);
  cudnnHandle_t h = cudnn_handle(dev);
  DeviceGuard g(dev);
  {
    std::lock_guard<std::mutex> lock(pl->mu);
    if (!pl->has_fwd) {
      cudnnConvolutionFwdAlgoPerf_t perf[kAlgos];
      int n = 0;
      FATHOM_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, pl->x.d, pl->w, pl->conv,
                                                              pl->y.d, kAlgos, &n, perf));
      const auto& best = pick(perf, n, "conv2d");
      pl->fwd = best.algo;
      pl->fwd_ws = best.memory;
      pl->has_fwd = true;
    }
  }
  Tensor xl = to_layout(x), wl = to_layout(weight), yl = out_layout(y);
  Workspace ws(pl->fwd_ws, dev);
  Scalars s(x.dtype());
  FATHOM_CUDNN_CHECK(cudnnConvolutionForward(h, s.one(), pl->x.d, xl.data_ptr(), pl->w,
                                             wl.data_ptr(), pl->conv, pl->fwd, ws.ptr,
                                             pl->fwd_ws, s.zero(), pl->y.d, yl.data_ptr()));
  if (bias.defined())
    FATHOM_CUDNN_CHECK(cudnnAddTensor(h, s.one(), pl->b.d, bias.data_ptr(), s.one(), pl->y.d,
                                      yl.data_ptr()));
  finish(y, yl);
}

void conv2d_backward_data(const Tensor& grad_y, const Tensor& weight, const ConvParams& p,
                          const Tensor& grad_x) {
  int dev = grad_y.device().index;
  auto pl = plan_for(grad_x.shape(), weight.shape(), grad_y.shape(), p, grad_y.dtype(), dev);
  cudnnHandle_t h = cudnn_handle(dev);
  DeviceGuard g(dev);
  {
    std::lock_guard<std::mutex> lock(pl->mu);
    if (!pl->has_data) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kAlgos];
      int n = 0;
      FATHOM_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(
          h, pl->w, pl->y.d, pl->conv, pl->x.d, kAlgos, &n, perf));
      const auto& best = pick(perf, n, "conv2d_backward_data");
      pl->data = best.algo;
      pl->data_ws = best.memory;
      pl->has_data = true;
    }
  }
  Tensor gyl = to_layout(grad_y), wl = to_layout(weight), gxl = out_layout(grad_x);
  Workspace ws(pl->data_ws, dev);
  Scalars s(grad_y.dtype());
  FATHOM_CUDNN_CHECK(cudnnConvolutionBackwardData(h, s.one(), pl->w, wl.data_ptr(), pl->y.d,
                                                  gyl.data_ptr(), pl->conv, pl->data, ws.ptr,
                                                  pl->data_ws, s.zero(), pl->x.d,
                                                  gxl.data_ptr()));
  finish(grad_x, gxl);
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const ConvParams& p,
                            const Tensor& grad_weight, const Tensor& grad_bias) {
  int dev = x.device().index;
  auto pl = plan_for(x.shape(), grad_weight.shape(), grad_y.shape(), p, x.dtype(), dev);
  cudnnHandle_t h = cudnn_handle(dev);
  DeviceGuard g(dev);
  {
    std::lock_guard<std::mutex> lock(pl->mu);
    if (!pl->has_filter) {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kAlgos];
      int n = 0;
      FATHOM_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
          h, pl->x.d, pl->y.d, pl->conv, pl->w, kAlgos, &n, perf));
      const auto& best = pick(perf, n, "conv2d_backward_weight");
      pl->filter = best.algo;
      pl->filter_ws = best.memory;
      pl->has_filter = true;
    }
  }
  Tensor xl = to_layout(x), gyl = to_layout(grad_y);
  Tensor gwl = channels_last(x.dtype()) ? out_layout(grad_weight) : grad_weight;
  Workspace ws(pl->filter_ws, dev);
  Scalars s(x.dtype());
  FATHOM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, s.one(), pl->x.d, xl.data_ptr(),
                                                    pl->y.d, gyl.data_ptr(), pl->conv,
                                                    pl->filter, ws.ptr, pl->filter_ws,
                                                    s.zero(), pl->w, gwl.data_ptr()));
  finish(grad_weight, gwl);
  if (grad_bias.defined())
    FATHOM_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, s.one(), pl->y.d, gyl.data_ptr(),
                                                    s.zero(), pl->b.d, grad_bias.data_ptr()));
}

}  // namespace fathom::cuda
