#pragma once
// Plain-loop f64 references for convolution, pooling and batch norm, written from PyTorch's
// definitions (not from Fathom's kernels): the oneDNN results are checked against these.
#include <algorithm>
#include <cmath>
#include <vector>

#include "fathom/core/ops/conv.h"
#include "fathom/core/tensor.h"

namespace fathom::testing::ref {

using Vec = std::vector<double>;

struct Conv {
  int64_t N, C, H, W, O, kH, kW;
  ConvParams p;
  int64_t oH() const { return (H + 2 * p.padding[0] - p.dilation[0] * (kH - 1) - 1) / p.stride[0] + 1; }
  int64_t oW() const { return (W + 2 * p.padding[1] - p.dilation[1] * (kW - 1) - 1) / p.stride[1] + 1; }

  // y[n, o, i, j] = b[o] + sum over c in o's group, kh, kw of x[n, c, ih, iw] * w[o, c', kh, kw]
  // with ih = i*s - pad + kh*dil (terms outside the input are zero padding). Also its
  // vector-Jacobian products for grad_y gy: gx, gw, gb.
  template <class F>
  void each(F&& f) const {
    int64_t Cg = C / p.groups, Og = O / p.groups;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < oH(); ++i)
          for (int64_t j = 0; j < oW(); ++j)
            for (int64_t c = 0; c < Cg; ++c)
              for (int64_t a = 0; a < kH; ++a)
                for (int64_t b = 0; b < kW; ++b) {
                  int64_t ih = i * p.stride[0] - p.padding[0] + a * p.dilation[0];
                  int64_t iw = j * p.stride[1] - p.padding[1] + b * p.dilation[1];
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  int64_t ci = (o / Og) * Cg + c;
                  f(((n * O + o) * oH() + i) * oW() + j, ((n * C + ci) * H + ih) * W + iw,
                    ((o * Cg + c) * kH + a) * kW + b);
                }
  }
  Vec forward(const Vec& x, const Vec& w, const Vec& b) const {
    Vec y(size_t(N * O * oH() * oW()));
    for (size_t k = 0; k < y.size(); ++k) y[k] = b.empty() ? 0 : b[(k / (oH() * oW())) % O];
    each([&](int64_t yi, int64_t xi, int64_t wi) { y[yi] += x[xi] * w[wi]; });
    return y;
  }
  void backward(const Vec& gy, const Vec& x, const Vec& w, Vec& gx, Vec& gw, Vec& gb) const {
    gx.assign(x.size(), 0);
    gw.assign(w.size(), 0);
    gb.assign(size_t(O), 0);
    each([&](int64_t yi, int64_t xi, int64_t wi) {
      gx[xi] += gy[yi] * w[wi];
      gw[wi] += gy[yi] * x[xi];
    });
    for (size_t k = 0; k < gy.size(); ++k) gb[(k / (oH() * oW())) % O] += gy[k];
  }
};

// Pooling of x [N*C planes, H, W], floor mode; max ignores padding, avg divides by the window
// (include_pad) or by its cells inside the input.
struct Pool {
  int64_t P, H, W;
  PoolParams p;
  int64_t oH() const { return (H + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1; }
  int64_t oW() const { return (W + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1; }

  // f(y index, list of x indices in the window, divisor)
  template <class F>
  void each(F&& f) const {
    for (int64_t q = 0; q < P; ++q)
      for (int64_t i = 0; i < oH(); ++i)
        for (int64_t j = 0; j < oW(); ++j) {
          std::vector<int64_t> cells;
          int64_t h0 = i * p.stride[0] - p.padding[0], w0 = j * p.stride[1] - p.padding[1];
          for (int64_t a = h0; a < h0 + p.kernel[0]; ++a)
            for (int64_t b = w0; b < w0 + p.kernel[1]; ++b)
              if (a >= 0 && a < H && b >= 0 && b < W) cells.push_back((q * H + a) * W + b);
          double div = p.kind == PoolKind::avg_include_pad ? double(p.kernel[0] * p.kernel[1])
                                                           : double(cells.size());
          f((q * oH() + i) * oW() + j, cells, div);
        }
  }
  Vec forward(const Vec& x) const {
    Vec y(size_t(P * oH() * oW()));
    each([&](int64_t yi, const std::vector<int64_t>& cells, double div) {
      if (p.kind == PoolKind::max) {
        double m = -INFINITY;
        for (int64_t c : cells) m = std::max(m, x[c]);
        y[yi] = m;
      } else {
        double s = 0;
        for (int64_t c : cells) s += x[c];
        y[yi] = s / div;
      }
    });
    return y;
  }
  Vec backward(const Vec& gy, const Vec& x) const {
    Vec gx(x.size(), 0);
    each([&](int64_t yi, const std::vector<int64_t>& cells, double div) {
      if (p.kind == PoolKind::max) {
        int64_t best = cells[0];
        for (int64_t c : cells)
          if (x[c] > x[best]) best = c;
        gx[best] += gy[yi];
      } else {
        for (int64_t c : cells) gx[c] += gy[yi] / div;
      }
    });
    return gx;
  }
};

// Training-mode batch norm of x [N, C, S]: per-channel mean and biased variance.
struct BatchNorm {
  int64_t N, C, S;
  double eps;
  void forward(const Vec& x, const Vec& w, const Vec& b, Vec& y, Vec& mean, Vec& var_unbiased) const {
    y.assign(x.size(), 0);
    mean.assign(size_t(C), 0);
    var_unbiased.assign(size_t(C), 0);
    double M = double(N * S);
    for (int64_t c = 0; c < C; ++c) {
      double s = 0, ss = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) s += x[(n * C + c) * S + i];
      double mu = s / M;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) ss += std::pow(x[(n * C + c) * S + i] - mu, 2);
      mean[c] = mu;
      var_unbiased[c] = ss / (M - 1);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) {
          int64_t k = (n * C + c) * S + i;
          y[k] = (x[k] - mu) / std::sqrt(ss / M + eps) * w[c] + b[c];
        }
    }
  }
};

}  // namespace fathom::testing::ref
