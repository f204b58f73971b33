#include "fathom/core/cpu/direct.h"

#include <cmath>
#include <limits>

#include "fathom/core/cpu/loops.h"

namespace fathom::cpu::direct {

namespace {

const double* in(const Tensor& t) { return t.defined() ? ptr<double>(t) : nullptr; }
double* out(const Tensor& t) { return t.defined() ? ptr<double>(t) : nullptr; }

// Visits every (output element, input element, weight element) triple of a convolution:
// f(y index, x index, w index). x [N, C, H, W], w [O, C/g, kH, kW], y [N, O, oH, oW].
template <class F>
void conv_terms(const Shape& xs, const Shape& ws, const Shape& ys, const ConvParams& p, F&& f) {
  int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  int64_t O = ws[0], Cg = ws[1], kH = ws[2], kW = ws[3], oH = ys[2], oW = ys[3];
  int64_t Og = O / p.groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < oH; ++oh)
        for (int64_t ow = 0; ow < oW; ++ow) {
          int64_t yi = ((n * O + o) * oH + oh) * oW + ow;
          for (int64_t ic = 0; ic < Cg; ++ic) {
            int64_t c = (o / Og) * Cg + ic;
            for (int64_t kh = 0; kh < kH; ++kh) {
              int64_t ih = oh * p.stride[0] - p.padding[0] + kh * p.dilation[0];
              if (ih < 0 || ih >= H) continue;
              for (int64_t kw = 0; kw < kW; ++kw) {
                int64_t iw = ow * p.stride[1] - p.padding[1] + kw * p.dilation[1];
                if (iw < 0 || iw >= W) continue;
                f(yi, ((n * C + c) * H + ih) * W + iw, ((o * Cg + ic) * kH + kh) * kW + kw);
              }
            }
          }
        }
}

}  // namespace

void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p,
            const Tensor& y) {
  const double *xp = in(x), *wp = in(weight), *bp = in(bias);
  double* yp = out(y);
  int64_t O = y.size(1), S = y.size(2) * y.size(3);
  for (int64_t i = 0; i < y.numel(); ++i) yp[i] = bp ? bp[(i / S) % O] : 0.0;
  conv_terms(x.shape(), weight.shape(), y.shape(), p,
             [&](int64_t yi, int64_t xi, int64_t wi) { yp[yi] += xp[xi] * wp[wi]; });
}

void conv2d_backward_data(const Tensor& grad_y, const Tensor& weight, const ConvParams& p,
                          const Tensor& grad_x) {
  const double *gy = in(grad_y), *wp = in(weight);
  double* gx = out(grad_x);
  std::fill(gx, gx + grad_x.numel(), 0.0);
  conv_terms(grad_x.shape(), weight.shape(), grad_y.shape(), p,
             [&](int64_t yi, int64_t xi, int64_t wi) { gx[xi] += gy[yi] * wp[wi]; });
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const ConvParams& p,
                            const Tensor& grad_weight, const Tensor& grad_bias) {
  const double *gy = in(grad_y), *xp = in(x);
  double *gw = out(grad_weight), *gb = out(grad_bias);
  std::fill(gw, gw + grad_weight.numel(), 0.0);
  conv_terms(x.shape(), grad_weight.shape(), grad_y.shape(), p,
             [&](int64_t yi, int64_t xi, int64_t wi) { gw[wi] += gy[yi] * xp[xi]; });
  if (gb) {
    int64_t O = grad_y.size(1), S = grad_y.size(2) * grad_y.size(3);
    std::fill(gb, gb + O, 0.0);
    for (int64_t i = 0; i < grad_y.numel(); ++i) gb[(i / S) % O] += gy[i];
  }
}

namespace {

// Calls f(plane, y index, window) for every output element; the window lists the input
// offsets in the plane it covers (padding excluded) and how many padded cells it counts.
struct Window {
  int64_t h0, h1, w0, w1;  // valid input rows [h0, h1), cols [w0, w1)
  int64_t count_with_pad;
};
template <class F>
void pool_windows(const Shape& xs, const Shape& ys, const PoolParams& p, F&& f) {
  int64_t planes = xs[0] * xs[1], H = xs[2], W = xs[3], oH = ys[2], oW = ys[3];
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < oH; ++oh)
      for (int64_t ow = 0; ow < oW; ++ow) {
        int64_t hs = oh * p.stride[0] - p.padding[0], ws = ow * p.stride[1] - p.padding[1];
        int64_t he = std::min(hs + p.kernel[0], H + p.padding[0]);
        int64_t we = std::min(ws + p.kernel[1], W + p.padding[1]);
        Window w{std::max<int64_t>(hs, 0), std::min(he, H), std::max<int64_t>(ws, 0),
                 std::min(we, W), (he - hs) * (we - ws)};
        f(pl, (pl * oH + oh) * oW + ow, w);
      }
}

// The first position of the window's largest value (PyTorch's choice among ties); NaN wins.
int64_t argmax_in(const double* plane, int64_t W, const Window& w) {
  int64_t best = w.h0 * W + w.w0;
  for (int64_t h = w.h0; h < w.h1; ++h)
    for (int64_t c = w.w0; c < w.w1; ++c) {
      double v = plane[h * W + c];
      if (v > plane[best] || std::isnan(v)) {
        best = h * W + c;
        if (std::isnan(v)) return best;
      }
    }
  return best;
}

}  // namespace

void pool2d(const Tensor& x, const PoolParams& p, const Tensor& y) {
  const double* xp = in(x);
  double* yp = out(y);
  int64_t HW = x.size(2) * x.size(3), W = x.size(3);
  pool_windows(x.shape(), y.shape(), p, [&](int64_t pl, int64_t yi, const Window& w) {
    const double* plane = xp + pl * HW;
    if (p.kind == PoolKind::max) {
      yp[yi] = plane[argmax_in(plane, W, w)];
      return;
    }
    double s = 0;
    for (int64_t h = w.h0; h < w.h1; ++h)
      for (int64_t c = w.w0; c < w.w1; ++c) s += plane[h * W + c];
    int64_t n = p.kind == PoolKind::avg_include_pad ? w.count_with_pad
                                                    : (w.h1 - w.h0) * (w.w1 - w.w0);
    yp[yi] = s / double(n);
  });
}

void pool2d_backward(const Tensor& grad_y, const Tensor& x, const PoolParams& p,
                     const Tensor& grad_x) {
  const double *gy = in(grad_y), *xp = in(x);
  double* gx = out(grad_x);
  std::fill(gx, gx + grad_x.numel(), 0.0);
  int64_t HW = x.size(2) * x.size(3), W = x.size(3);
  pool_windows(x.shape(), grad_y.shape(), p, [&](int64_t pl, int64_t yi, const Window& w) {
    double* gplane = gx + pl * HW;
    if (p.kind == PoolKind::max) {
      gplane[argmax_in(xp + pl * HW, W, w)] += gy[yi];
      return;
    }
    int64_t n = p.kind == PoolKind::avg_include_pad ? w.count_with_pad
                                                    : (w.h1 - w.h0) * (w.w1 - w.w0);
    for (int64_t h = w.h0; h < w.h1; ++h)
      for (int64_t c = w.w0; c < w.w1; ++c) gplane[h * W + c] += gy[yi] / double(n);
  });
}

// x [N, C, S]: statistics per channel over N * S values.
void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& var, const Tensor& invstd) {
  int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  double M = double(N * S);
  const double *xp = in(x), *wp = in(weight), *bp = in(bias);
  double *yp = out(y), *mp = out(mean), *vp = out(var), *ip = out(invstd);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, ss = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) s += xp[(n * C + c) * S + i];
    double mu = s / M;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        double d = xp[(n * C + c) * S + i] - mu;
        ss += d * d;
      }
    double rs = 1.0 / std::sqrt(ss / M + eps);
    mp[c] = mu;
    vp[c] = ss / (M - 1);
    ip[c] = rs;
    double a = rs * (wp ? wp[c] : 1.0), b = bp ? bp[c] : 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        int64_t k = (n * C + c) * S + i;
        yp[k] = (xp[k] - mu) * a + b;
      }
  }
}

// With xhat = (x - mean) * invstd: grad_bias = sum(gy), grad_weight = sum(gy * xhat),
// grad_x = w * invstd * (gy - grad_bias / M - xhat * grad_weight / M).
void batch_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& invstd, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  double M = double(N * S);
  const double *gy = in(grad_y), *xp = in(x), *wp = in(weight), *mp = in(mean), *ip = in(invstd);
  double *gx = out(grad_x), *gw = out(grad_weight), *gb = out(grad_bias);
  for (int64_t c = 0; c < C; ++c) {
    double sg = 0, sgx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        int64_t k = (n * C + c) * S + i;
        sg += gy[k];
        sgx += gy[k] * (xp[k] - mp[c]) * ip[c];
      }
    if (gb) gb[c] = sg;
    if (gw) gw[c] = sgx;
    double a = ip[c] * (wp ? wp[c] : 1.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        int64_t k = (n * C + c) * S + i;
        double xhat = (xp[k] - mp[c]) * ip[c];
        gx[k] = a * (gy[k] - sg / M - xhat * sgx / M);
      }
  }
}

}  // namespace fathom::cpu::direct
