// CUDA layer norm over the rows of x [rows, C], forward and backward, following
// core/cpu/layer_norm.cpp (itself llm.c's layernorm_forward/backward): statistics accumulate in
// S (f64 for f32/f64 rows, f32 for halves), the mean first and the variance around it (two
// passes over a row that stays in L1/L2: E[x^2] - E[x]^2 cancels badly when |mean| >> std),
// and they are stored as M (f32, f64 for f64 x) and the row normalised with the stored values,
// so backward sees exactly what forward used.
//
// Backward: grad_x per row (a warp or a block per row, like softmax). grad_weight/grad_bias
// are sums over rows, done without atomics so they are deterministic:
// layer_norm_param_partial_kernel sums a fixed chunk of rows per block into its own partial row,
// layer_norm_param_final_kernel adds the chunks in order. The chunking depends only on the shape.
#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

template <class T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// y = (x - mean) * rstd [* w] [+ b]
template <class T>
__global__ void layer_norm_forward_kernel(const T* x, const T* w, const T* b, T* y,
                                          stat_t<T>* mean, stat_t<T>* rstd, int64_t rows,
                                          int64_t C, double eps) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  using M = stat_t<T>;
  __shared__ S smem[32];
  int64_t row;
  if (!group_row(rows, &row)) return;
  const T* xr = x + row * C;
  S sum = S(0);
  row_for_each(C, threadIdx.x, blockDim.x, [&](int64_t, T v) { sum += S(to_c(v)); }, xr);
  S mu = group_allreduce(sum, SumOp<S>(), smem) / S(C);
  S sq = S(0);
  row_for_each(C, threadIdx.x, blockDim.x, [&](int64_t, T v) {
    S d = S(to_c(v)) - mu;
    sq += d * d;
  }, xr);
  S var = group_allreduce(sq, SumOp<S>(), smem) / S(C);
  S rs = S(1) / d_sqrt(var + S(eps));
  if (threadIdx.x == 0) {
    mean[row] = M(mu);
    rstd[row] = M(rs);
  }
  A am = A(M(mu)), ar = A(M(rs));
  row_write(y + row * C, C, threadIdx.x, blockDim.x, [&](int64_t j, T v) {
    A t = (A(to_c(v)) - am) * ar;
    if (w) t = t * A(to_c(w[j]));
    if (b) t = t + A(to_c(b[j]));
    return cvt<T>(t);
  }, xr);
}

// With xhat = (x - mean) * rstd and g = grad_y * w (or grad_y):
//   grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat))
template <class T>
__global__ void layer_norm_backward_x_kernel(const T* gy, const T* x, const T* w,
                                             const stat_t<T>* mean, const stat_t<T>* rstd, T* gx,
                                             int64_t rows, int64_t C) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  __shared__ Sum2<S> smem[32];
  int64_t row;
  if (!group_row(rows, &row)) return;
  const T* gr = gy + row * C;
  const T* xr = x + row * C;
  A mu = A(mean[row]), rs = A(rstd[row]);
  Sum2<S> acc{S(0), S(0)};
  row_for_each(C, threadIdx.x, blockDim.x, [&](int64_t j, T g, T v) {
    A gw = A(to_c(g)) * (w ? A(to_c(w[j])) : A(1));
    acc.a += S(gw);
    acc.b += S(gw * ((A(to_c(v)) - mu) * rs));
  }, gr, xr);
  acc = group_allreduce(acc, Sum2Op<S>(), smem);
  A a = A(acc.a / S(C)), bm = A(acc.b / S(C));
  row_write(gx + row * C, C, threadIdx.x, blockDim.x, [&](int64_t j, T g, T v) {
    A xh = (A(to_c(v)) - mu) * rs;
    A gw = w ? A(to_c(g)) * A(to_c(w[j])) : A(to_c(g));
    return cvt<T>(rs * (gw - a - xh * bm));
  }, gr, xr);
}

constexpr int kPX = 32, kPY = 8;  // partial kernel block: 32 columns x 8 row lanes

// Block (column tile, chunk): pw[chunk, c] = sum of grad_y * xhat, pb[chunk, c] = sum of grad_y
// over the chunk's rows. Lanes of a column merge through shared memory in lane order.
template <class T>
__global__ void __launch_bounds__(kPX * kPY)
    layer_norm_param_partial_kernel(const T* gy, const T* x, const stat_t<T>* mean,
                                    const stat_t<T>* rstd, row_acc_t<T>* pw, row_acc_t<T>* pb,
                                    int64_t rows, int64_t C, int64_t chunk_rows, int64_t tiles) {
  using A = compute_t<T>;
  using S = row_acc_t<T>;
  __shared__ Sum2<S> sm[kPY][kPX];
  int64_t tile = blockIdx.x % tiles, chunk = blockIdx.x / tiles;
  int64_t c = tile * kPX + threadIdx.x;
  int64_t r0 = chunk * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  Sum2<S> acc{S(0), S(0)};
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kPY) {
      A g = A(to_c(gy[r * C + c]));
      if (pw) acc.a += S(g * ((A(to_c(x[r * C + c])) - A(mean[r])) * A(rstd[r])));
      acc.b += S(g);
    }
  }
  sm[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int y = 1; y < kPY; ++y) acc = Sum2Op<S>().combine(acc, sm[y][threadIdx.x]);
    if (pw) pw[chunk * C + c] = acc.a;
    if (pb) pb[chunk * C + c] = acc.b;
  }
}

template <class T>
__global__ void layer_norm_param_final_kernel(const row_acc_t<T>* pw, const row_acc_t<T>* pb,
                                              T* gw, T* gb, int64_t C, int64_t chunks) {
  using S = row_acc_t<T>;
  int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  S sw = S(0), sb = S(0);
  for (int64_t k = 0; k < chunks; ++k) {
    if (gw) sw += pw[k * C + c];
    if (gb) sb += pb[k * C + c];
  }
  if (gw) gw[c] = cvt<T>(sw);
  if (gb) gb[c] = cvt<T>(sb);
}

void check_param(const char* op, const char* what, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  FATHOM_CHECK(p.dim() == 1 && p.size(0) == x.size(1) && p.dtype() == x.dtype() &&
                   p.is_contiguous() && p.device() == x.device(),
               op, ": ", what, " ", p.desc(), " does not match x ", x.desc());
}

template <class T>
void check_stats(const char* op, const Tensor& s, const Tensor& x) {
  FATHOM_CHECK(s.numel() == x.size(0) && s.is_contiguous() &&
                   s.dtype() == dtype_of_device<stat_t<T>>() && s.device() == x.device(),
               op, ": statistics ", s.desc(), " do not fit x ", x.desc(), ": expected [",
               x.size(0), "] ", dtype_name(dtype_of_device<stat_t<T>>()));
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  FATHOM_CHECK(x.dim() == 2 && x.is_contiguous() && y.shape() == x.shape() &&
                   y.dtype() == x.dtype() && y.is_contiguous(),
               "layer_norm: x ", x.desc(), " and y ", y.desc(), " must be contiguous [rows, C]");
  check_param("layer_norm", "weight", weight, x);
  check_param("layer_norm", "bias", bias, x);
  int64_t rows = x.size(0), C = x.size(1);
  if (rows == 0 || C == 0) return;
  Launch L(y);
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
    check_stats<T>("layer_norm", mean, x);
    check_stats<T>("layer_norm", rstd, x);
    RowLaunch rl = row_launch(rows, C, sizeof(T));
    layer_norm_forward_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(
        ptr<const T>(x), ptr_or_null<const T>(weight), ptr_or_null<const T>(bias), ptr<T>(y),
        ptr<stat_t<T>>(mean), ptr<stat_t<T>>(rstd), rows, C, eps);
    FATHOM_CUDA_CHECK_LAUNCH();
  });
}

void layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& rstd, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  const char* op = "layer_norm_backward";
  FATHOM_CHECK(x.dim() == 2 && x.is_contiguous() && grad_y.shape() == x.shape() &&
                   grad_y.dtype() == x.dtype() && grad_y.is_contiguous() &&
                   grad_x.shape() == x.shape() && grad_x.dtype() == x.dtype() &&
                   grad_x.is_contiguous(),
               op, ": grad_y ", grad_y.desc(), ", x ", x.desc(), ", grad_x ", grad_x.desc(),
               " must be contiguous [rows, C] of one dtype");
  check_param(op, "weight", weight, x);
  check_param(op, "grad_weight", grad_weight, x);
  check_param(op, "grad_bias", grad_bias, x);
  int64_t rows = x.size(0), C = x.size(1);
  if (C == 0) return;
  Launch L(grad_x);
  dispatch_float(x.dtype(), op, [&]<class T>() {
    using S = row_acc_t<T>;
    using M = stat_t<T>;
    check_stats<T>(op, mean, x);
    check_stats<T>(op, rstd, x);
    if (rows > 0) {
      RowLaunch rl = row_launch(rows, C, sizeof(T));
      layer_norm_backward_x_kernel<T><<<rl.grid, rl.block, 0, L.stream>>>(
          ptr<const T>(grad_y), ptr<const T>(x), ptr_or_null<const T>(weight),
          ptr<const M>(mean), ptr<const M>(rstd), ptr<T>(grad_x), rows, C);
      FATHOM_CUDA_CHECK_LAUNCH();
    }
    if (!grad_weight.defined() && !grad_bias.defined()) return;
    // At most 256 chunks of at least 32 rows: enough blocks to fill the GPU for any C, few
    // enough partial rows that the final sum is cheap.
    int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, ceil_div(rows, 32)));
    int64_t chunk_rows = std::max<int64_t>(1, ceil_div(rows, chunks));
    chunks = std::max<int64_t>(1, ceil_div(rows, chunk_rows));
    int64_t tiles = ceil_div(C, kPX);
    auto pw = grad_weight.defined() ? allocate(size_t(chunks * C) * sizeof(S), L.device) : nullptr;
    auto pb = grad_bias.defined() ? allocate(size_t(chunks * C) * sizeof(S), L.device) : nullptr;
    S* pwp = pw ? static_cast<S*>(pw->data()) : nullptr;
    S* pbp = pb ? static_cast<S*>(pb->data()) : nullptr;
    FATHOM_CHECK(tiles * chunks < (int64_t(1) << 31), op, ": C = ", C, " is too large");
    layer_norm_param_partial_kernel<T><<<unsigned(tiles * chunks), dim3(kPX, kPY), 0, L.stream>>>(
        ptr<const T>(grad_y), ptr<const T>(x), ptr<const M>(mean), ptr<const M>(rstd), pwp, pbp,
        rows, C, chunk_rows, tiles);
    FATHOM_CUDA_CHECK_LAUNCH();
    layer_norm_param_final_kernel<T><<<unsigned(ceil_div(C, 256)), 256, 0, L.stream>>>(
        pwp, pbp, ptr_or_null<T>(grad_weight), ptr_or_null<T>(grad_bias), C, chunks);
    FATHOM_CUDA_CHECK_LAUNCH();
    // pw/pb return to the cache here; the kernels reading them are already queued on the same
    // stream (allocator.cpp).
  });
}

}  // namespace fathom::cuda
