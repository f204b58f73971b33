// CPU layer norm over the rows of x [rows, C], forward and backward (llm.c's layernorm_forward /
// layernorm_backward, with the statistics accumulated wider than the data).
//
// Statistics (mean, rstd [rows]) are f32, or f64 for f64 input, so an f64 gradient check sees
// the exact saved values. The mean is found first and the variance summed around it (two
// passes over an L1-resident row): one pass of E[x^2] - E[x]^2 cancels badly when |mean| >> std.
#include <cmath>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

namespace {

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

template <class T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// y = (x - mean) * rstd [* w] [+ b]; the variant is chosen outside the loop so it vectorizes.
template <class T, bool kW, bool kB>
void affine_row(const T* x, const T* w, const T* b, acc_t<T> mean, acc_t<T> rstd, T* y,
                int64_t n) {
  using A = acc_t<T>;
  for (int64_t j = 0; j < n; ++j) {
    A v = (A(x[j]) - mean) * rstd;
    if constexpr (kW) v = v * A(w[j]);
    if constexpr (kB) v = v + A(b[j]);
    y[j] = T(v);
  }
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  int64_t rows = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
    using A = acc_t<T>;
    using S = float_acc_t<T>;
    using M = stat_t<T>;
    const T* xp = ptr<T>(x);
    const T* wp = ptr_or_null<T>(weight);
    const T* bp = ptr_or_null<T>(bias);
    T* yp = ptr<T>(y);
    M* mp = ptr<M>(mean);
    M* rp = ptr<M>(rstd);
    parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(C, 1)),
                 [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* xr = xp + r * C;
        S mu = row_sum<S>(xr, C) / S(C);
        S var = row_sum<S>(xr, C, [mu](A v) { S d = S(v) - mu; return d * d; }) / S(C);
        S rs = S(1) / std::sqrt(var + S(eps));
        mp[r] = M(mu);
        rp[r] = M(rs);
        // The row is normalised with the statistics as stored, so backward sees the same ones.
        A am = A(M(mu)), ar = A(M(rs));
        T* yr = yp + r * C;
        if (wp && bp) affine_row<T, true, true>(xr, wp, bp, am, ar, yr, C);
        else if (wp) affine_row<T, true, false>(xr, wp, bp, am, ar, yr, C);
        else if (bp) affine_row<T, false, true>(xr, wp, bp, am, ar, yr, C);
        else affine_row<T, false, false>(xr, wp, bp, am, ar, yr, C);
      }
    });
  });
}

// With xhat = (x - mean) * rstd and g = grad_y * w (or grad_y):
//   grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   grad_w = sum over rows of grad_y * xhat,  grad_b = sum over rows of grad_y
// Parameter gradients are summed per fixed block of rows into that block's own partial
// buffer, then the blocks are added in order: no atomics, and the same bits for any number of
// threads (the blocks depend only on the shape).
void layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& rstd, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  int64_t rows = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "layer_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    using S = float_acc_t<T>;
    using M = stat_t<T>;
    const T* gp = ptr<T>(grad_y);
    const T* xp = ptr<T>(x);
    const T* wp = ptr_or_null<T>(weight);
    const M* mp = ptr<M>(mean);
    const M* rp = ptr<M>(rstd);
    T* gxp = ptr<T>(grad_x);
    T* gwp = ptr_or_null<T>(grad_weight);
    T* gbp = ptr_or_null<T>(grad_bias);
    bool params = gwp || gbp;

    int64_t block = std::max<int64_t>(1, (rows + 63) / 64), nblocks = (rows + block - 1) / block;
    std::vector<S> pw(gwp ? size_t(nblocks * C) : 0), pb(gbp ? size_t(nblocks * C) : 0);
    parallel_for(nblocks,
                 std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(block * C, 1)),
                 [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        S* pwb = gwp ? pw.data() + blk * C : nullptr;
        S* pbb = gbp ? pb.data() + blk * C : nullptr;
        for (int64_t r = blk * block; r < std::min(rows, (blk + 1) * block); ++r) {
          const T* g = gp + r * C;
          const T* xr = xp + r * C;
          T* gx = gxp + r * C;
          A mu = A(mp[r]), rs = A(rp[r]);
          S sum_g = 0, sum_gx = 0;
          {
            S lg[kRowLanes] = {}, lgx[kRowLanes] = {};
            int64_t j = 0;
            auto acc = [&](int l, int64_t k) {
              A gw = A(g[k]) * (wp ? A(wp[k]) : A(1));
              lg[l] += S(gw);
              lgx[l] += S(gw * ((A(xr[k]) - mu) * rs));
            };
            for (; j + kRowLanes <= C; j += kRowLanes)
              for (int l = 0; l < kRowLanes; ++l) acc(l, j + l);
            for (; j < C; ++j) acc(0, j);
            for (int l = 0; l < kRowLanes; ++l) sum_g += lg[l], sum_gx += lgx[l];
          }
          A a = A(sum_g / S(C)), bm = A(sum_gx / S(C));
          if (wp)
            for (int64_t j = 0; j < C; ++j) {
              A xh = (A(xr[j]) - mu) * rs;
              gx[j] = T(rs * (A(g[j]) * A(wp[j]) - a - xh * bm));
            }
          else
            for (int64_t j = 0; j < C; ++j) {
              A xh = (A(xr[j]) - mu) * rs;
              gx[j] = T(rs * (A(g[j]) - a - xh * bm));
            }
          if (pwb)
            for (int64_t j = 0; j < C; ++j) pwb[j] += S(A(g[j]) * ((A(xr[j]) - mu) * rs));
          if (pbb)
            for (int64_t j = 0; j < C; ++j) pbb[j] += S(A(g[j]));
        }
      }
    });
    if (!params) return;
    int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(nblocks, 1));
    parallel_for(C, grain, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        S sw = 0, sb = 0;
        for (int64_t blk = 0; blk < nblocks; ++blk) {
          if (gwp) sw += pw[size_t(blk * C + j)];
          if (gbp) sb += pb[size_t(blk * C + j)];
        }
        if (gwp) gwp[j] = T(sw);
        if (gbp) gbp[j] = T(sb);
      }
    });
  });
}

}  // namespace fathom::cpu
