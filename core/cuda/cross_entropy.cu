// CUDA cross-entropy of logits [N, C] against class indices [N], forward and backward, through
// each row's log-sum-exp (max subtracted, so large logits never overflow), as
// core/cpu/cross_entropy.cpp. One warp or block per row (common.cuh: row_launch); the running
// (max, sum of exp) is merged across threads by rescaling. Losses and the backward scale are
// f32, or f64 for f64 logits; the scale is read on the device, so backward needs no host sync.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

template <class T>
using loss_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__device__ __forceinline__ MaxSum<compute_t<T>, row_acc_t<T>> row_max_sum(const T* xr, int64_t C,
                                                                          void* smem) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  MaxSumOp<A, S> op;
  MaxSum<A, S> st = op.identity();
  row_for_each(C, threadIdx.x, blockDim.x, [&](int64_t, T v) { st = op.add(st, A(to_c(v))); }, xr);
  return group_allreduce(st, op, static_cast<MaxSum<A, S>*>(smem));
}

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* targets,
                                             int64_t ignore_index, loss_t<T>* losses, int64_t N,
                                             int64_t C) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  using L = loss_t<T>;
  __shared__ MaxSum<A, S> smem[32];
  int64_t row;
  if (!group_row(N, &row)) return;
  int64_t t = targets[row];  // the same for the whole group: it leaves together
  if (t == ignore_index) {
    if (threadIdx.x == 0) losses[row] = L(0);
    return;
  }
  const T* xr = logits + row * C;
  MaxSum<A, S> st = row_max_sum(xr, C, smem);
  // loss = logsumexp(x) - x[t] = log(sum) - (x[t] - m)
  if (threadIdx.x == 0) losses[row] = L(d_log(st.s) - S(A(to_c(xr[t])) - st.m));
}

// grad = scale * (softmax(x) - onehot(t)); 0 on ignored rows.
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* targets,
                                              int64_t ignore_index, const loss_t<T>* scale,
                                              T* grad, int64_t N, int64_t C) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  __shared__ MaxSum<A, S> smem[32];
  int64_t row;
  if (!group_row(N, &row)) return;
  int64_t t = targets[row];
  T* gr = grad + row * C;
  const T* xr = logits + row * C;
  if (t == ignore_index) {
    row_write(gr, C, threadIdx.x, blockDim.x, [](int64_t, T) { return cvt<T>(A(0)); }, xr);
    return;
  }
  MaxSum<A, S> st = row_max_sum(xr, C, smem);
  S sc = S(*scale);
  A f = A(sc / st.s), m = st.m, asc = A(sc);
  row_write(gr, C, threadIdx.x, blockDim.x, [&](int64_t j, T v) {
    A e = d_exp(A(to_c(v)) - m);
    return cvt<T>(j == t ? e * f - asc : e * f);
  }, xr);
}

template <class T>
void check_cross_entropy(const char* op, const Tensor& logits, const Tensor& targets,
                         const Tensor& lossy) {
  FATHOM_CHECK(logits.dim() == 2 && logits.is_contiguous() && targets.dim() == 1 &&
                   targets.size(0) == logits.size(0) && targets.dtype() == DType::i64 &&
                   targets.is_contiguous() && targets.device() == logits.device() &&
                   lossy.device() == logits.device(),
               op, ": logits ", logits.desc(), " must be contiguous [N, C] and targets ",
               targets.desc(), " contiguous i64 [N], on one device");
  FATHOM_CHECK(lossy.dtype() == dtype_of_device<loss_t<T>>(), op, ": ", lossy.desc(),
               " should be ", dtype_name(dtype_of_device<loss_t<T>>()), " for logits ",
               logits.desc());
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                   const Tensor& losses) {
  int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  Launch L(losses);
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    check_cross_entropy<T>("cross_entropy", logits, targets, losses);
    FATHOM_CHECK(losses.numel() == N && losses.is_contiguous(), "cross_entropy: losses ",
                 losses.desc(), " should be [", N, "]");
    FATHOM_CHECK(C > 0, "cross_entropy: logits ", logits.desc(), " have no classes");
    RowLaunch rl = row_launch(N, C, sizeof(T));
    cross_entropy_forward_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(
        ptr<const T>(logits), ptr<const int64_t>(targets), ignore_index, ptr<loss_t<T>>(losses),
        N, C);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                            const Tensor& scale, const Tensor& grad_logits) {
  int64_t N = logits.size(0), C = logits.size(1);
  if (N * C == 0) return;
  Launch L(grad_logits);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    check_cross_entropy<T>("cross_entropy_backward", logits, targets, scale);
    FATHOM_CHECK(scale.numel() == 1 && grad_logits.shape() == logits.shape() &&
                     grad_logits.dtype() == logits.dtype() && grad_logits.is_contiguous(),
                 "cross_entropy_backward: scale ", scale.desc(), " must have one element and grad ",
                 grad_logits.desc(), " match logits ", logits.desc());
    RowLaunch rl = row_launch(N, C, sizeof(T));
    cross_entropy_backward_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(
        ptr<const T>(logits), ptr<const int64_t>(targets), ignore_index,
        ptr<const loss_t<T>>(scale), ptr<T>(grad_logits), N, C);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fathom::cuda
