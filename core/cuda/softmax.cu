// CUDA softmax and log-softmax over the rows of x [rows, cols], forward and backward.
//
// A row is handled by one warp (several rows per block) when it is short, else by one block of
// up to 1024 threads (common.cuh: row_launch). The forward pass reads the row once for its
// running (max, sum of exp) (merged across threads by rescaling, MaxSumOp) and once more to
// write: the second read mostly hits L1/L2. Arithmetic follows core/cpu/softmax.cpp: exp in the
// compute type A, sums in S (f64 for f32 rows, f32 for halves), y = exp(x - m) * (1 / sum) and
// log y = (x - m) - log(sum).
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  __shared__ MaxSum<A, S> smem[32];
  int64_t row;
  if (!group_row(rows, &row)) return;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  MaxSumOp<A, S> op;
  MaxSum<A, S> st = op.identity();
  row_for_each(cols, threadIdx.x, blockDim.x, [&](int64_t, T v) { st = op.add(st, A(to_c(v))); },
               xr);
  st = group_allreduce(st, op, smem);
  A m = st.m;
  if (!log) {
    A inv = A(S(1) / st.s);
    row_write(yr, cols, threadIdx.x, blockDim.x,
              [&](int64_t, T v) { return cvt<T>(d_exp(A(to_c(v)) - m) * inv); }, xr);
  } else {
    A lse = A(d_log(st.s));
    row_write(yr, cols, threadIdx.x, blockDim.x,
              [&](int64_t, T v) { return cvt<T>((A(to_c(v)) - m) - lse); }, xr);
  }
}

// softmax:     grad_x = y * (grad_y - sum(grad_y * y))
// log_softmax: grad_x = grad_y - exp(y) * sum(grad_y)
template <class T>
__global__ void softmax_backward_kernel(const T* gy, const T* y, T* gx, int64_t rows,
                                        int64_t cols, bool log) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  __shared__ S smem[32];
  int64_t row;
  if (!group_row(rows, &row)) return;
  const T* gr = gy + row * cols;
  const T* yr = y + row * cols;
  T* outr = gx + row * cols;
  S acc = S(0);
  if (!log)
    row_for_each(cols, threadIdx.x, blockDim.x,
                 [&](int64_t, T g, T v) { acc += S(A(to_c(g)) * A(to_c(v))); }, gr, yr);
  else
    row_for_each(cols, threadIdx.x, blockDim.x, [&](int64_t, T g) { acc += S(A(to_c(g))); }, gr);
  A s = A(group_allreduce(acc, SumOp<S>(), smem));
  if (!log)
    row_write(outr, cols, threadIdx.x, blockDim.x,
              [&](int64_t, T g, T v) { return cvt<T>(A(to_c(v)) * (A(to_c(g)) - s)); }, gr, yr);
  else
    row_write(outr, cols, threadIdx.x, blockDim.x,
              [&](int64_t, T g, T v) { return cvt<T>(A(to_c(g)) - d_exp(A(to_c(v))) * s); }, gr,
              yr);
}

void check_rows(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts)
    FATHOM_CHECK(t->dim() == 2 && t->shape() == first.shape() && t->dtype() == first.dtype() &&
                     t->is_contiguous() && t->device() == first.device(),
                 op, ": expected contiguous [rows, cols] tensors of one shape and dtype, got ",
                 t->desc(), " and ", first.desc());
}

}  // namespace

void softmax(const Tensor& x, const Tensor& y, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_rows(op, {&x, &y});
  int64_t rows = x.size(0), cols = x.size(1);
  if (rows * cols == 0) return;
  Launch L(y);
  dispatch_float(x.dtype(), op, [&]<class T>() {
    RowLaunch rl = row_launch(rows, cols, sizeof(T));
    softmax_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(ptr<const T>(x), ptr<T>(y), rows, cols,
                                                         log);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward(const Tensor& grad_y, const Tensor& y, const Tensor& grad_x, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_rows(op, {&grad_y, &y, &grad_x});
  int64_t rows = y.size(0), cols = y.size(1);
  if (rows * cols == 0) return;
  Launch L(grad_x);
  dispatch_float(y.dtype(), op, [&]<class T>() {
    RowLaunch rl = row_launch(rows, cols, sizeof(T));
    softmax_backward_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(
        ptr<const T>(grad_y), ptr<const T>(y), ptr<T>(grad_x), rows, cols, log);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fathom::cuda
