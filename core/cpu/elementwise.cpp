// CPU elementwise kernels: the reference for the CUDA ones. Half types load as f32, compute,
// and round once on store.
#include <cmath>
#include <cstring>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

// ---- copy / fill ----

void copy(const Tensor& dst, const Tensor& src) {
  dispatch_all(dst.dtype(), "copy", [&]<class D>() {
    dispatch_all(src.dtype(), "copy", [&]<class S>() {
      D* d = ptr<D>(dst);
      const S* s = ptr<S>(src);
      if constexpr (std::is_same_v<D, S>) {
        if (dst.is_contiguous() && src.is_contiguous()) {
          parallel_for(dst.numel(), kParallelGrain * 4, [&](int64_t b, int64_t e) {
            std::memcpy(d + b, s + b, size_t(e - b) * sizeof(D));
          });
          return;
        }
      }
      for_each_row<2>(dst.shape(), {dst.strides(), src.strides()},
                      [&](auto off, int64_t n, auto st) {
        D* dp = d + off[0];
        const S* sp = s + off[1];
        for (int64_t i = 0; i < n; ++i)
          dp[i * st[0]] = static_cast<D>(static_cast<acc_t<S>>(sp[i * st[1]]));
      });
    });
  });
}

void fill(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill", [&]<class T>() {
    T v = static_cast<T>(static_cast<acc_t<T>>(value));
    T* d = ptr<T>(dst);
    for_each_row<1>(dst.shape(), {dst.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) d[off[0] + i * st[0]] = v;
    });
  });
}

void copy_bytes(void* dst, Device, const void* src, Device, size_t nbytes) {
  std::memcpy(dst, src, nbytes);
}

// ---- unary ----

static constexpr double kSqrt2OverPi = 0.7978845608028654;

template <class A>
static A gelu_tanh(A x) {
  A inner = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  return A(0.5) * x * (A(1) + std::tanh(inner));
}

template <class A>
static A gelu_tanh_grad(A x) {
  A inner = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  A th = std::tanh(inner);
  A dinner = A(kSqrt2OverPi) * (A(1) + A(3 * 0.044715) * x * x);
  return A(0.5) * (A(1) + th) + A(0.5) * x * (A(1) - th * th) * dinner;
}

// GELU (tanh form) on four f32 lanes without libm: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), and
// sigmoid from exp_approx. libm's scalar tanhf was a sixth of a CPU GPT step. e = exp(-2u)
// overflowing to inf gives s = 0 (the exact answer rounds to -0 there); NaN stays NaN.
static f32x4 gelu_x4(f32x4 x) {
  f32x4 u = float(kSqrt2OverPi) * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp_approx(-2.0f * u));
}
// d/dx [x s(2u)] = s + x s (1 - s) 2u', with s = sigmoid(2u) and u' = k (1 + 3c x^2).
static f32x4 gelu_grad_x4(f32x4 g, f32x4 x) {
  f32x4 u = float(kSqrt2OverPi) * (x + 0.044715f * x * x * x);
  f32x4 s = 1.0f / (1.0f + exp_approx(-2.0f * u));
  f32x4 du = float(kSqrt2OverPi) * (1.0f + float(3 * 0.044715) * x * x);
  return g * (s + x * s * (1.0f - s) * 2.0f * du);
}

// f32 rows through a four-lane function: out[i] = f(a[i], b[i]) (b unused when f takes one
// argument). Strided or partial groups are gathered into a zero-padded vector first.
template <class F>
static void map_x4(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  float* op = ptr<float>(out);
  const float* ap = ptr<float>(a);
  const float* bp = b.defined() ? ptr<float>(b) : ap;
  const Shape& bst = b.defined() ? b.strides() : a.strides();
  for_each_row<3>(out.shape(), {out.strides(), a.strides(), bst}, [&](auto off, int64_t n, auto st) {
    int64_t i = 0;
    if (st[0] == 1 && st[1] == 1 && st[2] == 1)
      for (; i + 4 <= n; i += 4) {
        f32x4 va, vb;
        std::memcpy(&va, ap + off[1] + i, sizeof va);
        std::memcpy(&vb, bp + off[2] + i, sizeof vb);
        f32x4 r = f(va, vb);
        std::memcpy(op + off[0] + i, &r, sizeof r);
      }
    for (; i < n; i += 4) {
      int64_t m = std::min<int64_t>(4, n - i);
      f32x4 va = {}, vb = {};
      for (int64_t l = 0; l < m; ++l) {
        va[l] = ap[off[1] + (i + l) * st[1]];
        vb[l] = bp[off[2] + (i + l) * st[2]];
      }
      f32x4 r = f(va, vb);
      for (int64_t l = 0; l < m; ++l) op[off[0] + (i + l) * st[0]] = r[l];
    }
  });
}

// Runs f over (x -> out) with out contiguous; the op is chosen outside the loop so the loop body
// is a single inlined expression the compiler can vectorize.
template <class T, class F>
static void map1(const Tensor& x, const Tensor& out, F f) {
  const T* xp = ptr<T>(x);
  T* op = ptr<T>(out);
  using A = acc_t<T>;
  bool stream = out.nbytes() >= stream_threshold();
  for_each_row<2>(out.shape(), {out.strides(), x.strides()}, [&](auto off, int64_t n, auto st) {
    T* o = op + off[0];
    const T* xi = xp + off[1];
    if (st[1] == 1)
      store_row(o, n, stream, [&](int64_t i) { return T(f(A(xi[i]))); });
    else
      for (int64_t i = 0; i < n; ++i) o[i] = T(f(A(xi[i * st[1]])));
  });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_float(x.dtype(), op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    switch (op) {
      case UnaryOp::neg: return map1<T>(x, out, [](A v) { return -v; });
      case UnaryOp::exp: return map1<T>(x, out, [](A v) { return std::exp(v); });
      case UnaryOp::log: return map1<T>(x, out, [](A v) { return std::log(v); });
      case UnaryOp::tanh: return map1<T>(x, out, [](A v) { return std::tanh(v); });
      case UnaryOp::relu: return map1<T>(x, out, [](A v) { return v > A(0) ? v : A(0); });
      case UnaryOp::gelu:
        if constexpr (std::is_same_v<T, float>)
          return map_x4(out, x, Tensor(), [](f32x4 v, f32x4) { return gelu_x4(v); });
        else
          return map1<T>(x, out, [](A v) { return gelu_tanh(v); });
      case UnaryOp::sigmoid: return map1<T>(x, out, [](A v) { return A(1) / (A(1) + std::exp(-v)); });
      case UnaryOp::sqrt: return map1<T>(x, out, [](A v) { return std::sqrt(v); });
      case UnaryOp::rsqrt: return map1<T>(x, out, [](A v) { return A(1) / std::sqrt(v); });
      case UnaryOp::abs: return map1<T>(x, out, [](A v) { return std::abs(v); });
      case UnaryOp::square: return map1<T>(x, out, [](A v) { return v * v; });
      case UnaryOp::sin: return map1<T>(x, out, [](A v) { return std::sin(v); });
      case UnaryOp::cos: return map1<T>(x, out, [](A v) { return std::cos(v); });
      case UnaryOp::log1p: return map1<T>(x, out, [](A v) { return std::log1p(v); });
      case UnaryOp::expm1: return map1<T>(x, out, [](A v) { return std::expm1(v); });
      case UnaryOp::sign: return map1<T>(x, out, [](A v) { return A((v > A(0)) - (v < A(0))); });
    }
  });
}

// grad_x = f(grad_y, s) where s is x or y, whichever the derivative is cheapest in.
template <class T, class F>
static void map2_grad(const Tensor& gy, const Tensor& s, const Tensor& gx, F f) {
  const T* gp = ptr<T>(gy);
  const T* sp = ptr<T>(s);
  T* op = ptr<T>(gx);
  using A = acc_t<T>;
  for_each_row<3>(gx.shape(), {gx.strides(), gy.strides(), s.strides()},
                  [&](auto off, int64_t n, auto st) {
    for (int64_t i = 0; i < n; ++i)
      op[off[0] + i * st[0]] = T(f(A(gp[off[1] + i * st[1]]), A(sp[off[2] + i * st[2]])));
  });
}

void unary_backward(UnaryOp op, const Tensor& gy, const Tensor& x, const Tensor& y,
                    const Tensor& gx) {
  dispatch_float(gy.dtype(), op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    switch (op) {
      case UnaryOp::neg: return map2_grad<T>(gy, gy, gx, [](A g, A) { return -g; });
      case UnaryOp::exp: return map2_grad<T>(gy, y, gx, [](A g, A v) { return g * v; });
      case UnaryOp::log: return map2_grad<T>(gy, x, gx, [](A g, A v) { return g / v; });
      case UnaryOp::tanh: return map2_grad<T>(gy, y, gx, [](A g, A v) { return g * (A(1) - v * v); });
      case UnaryOp::relu: return map2_grad<T>(gy, x, gx, [](A g, A v) { return v > A(0) ? g : A(0); });
      case UnaryOp::gelu:
        if constexpr (std::is_same_v<T, float>)
          return map_x4(gx, gy, x, [](f32x4 g, f32x4 v) { return gelu_grad_x4(g, v); });
        else
          return map2_grad<T>(gy, x, gx, [](A g, A v) { return g * gelu_tanh_grad(v); });
      case UnaryOp::sigmoid: return map2_grad<T>(gy, y, gx, [](A g, A v) { return g * v * (A(1) - v); });
      case UnaryOp::sqrt: return map2_grad<T>(gy, y, gx, [](A g, A v) { return g / (A(2) * v); });
      case UnaryOp::rsqrt: return map2_grad<T>(gy, y, gx, [](A g, A v) { return A(-0.5) * g * v * v * v; });
      case UnaryOp::abs: return map2_grad<T>(gy, x, gx, [](A g, A v) { return v > A(0) ? g : v < A(0) ? -g : A(0); });
      case UnaryOp::square: return map2_grad<T>(gy, x, gx, [](A g, A v) { return A(2) * g * v; });
      case UnaryOp::sin: return map2_grad<T>(gy, x, gx, [](A g, A v) { return g * std::cos(v); });
      case UnaryOp::cos: return map2_grad<T>(gy, x, gx, [](A g, A v) { return -g * std::sin(v); });
      case UnaryOp::log1p: return map2_grad<T>(gy, x, gx, [](A g, A v) { return g / (A(1) + v); });
      // d expm1(x)/dx = exp(x) = y + 1.
      case UnaryOp::expm1: return map2_grad<T>(gy, y, gx, [](A g, A v) { return g * (v + A(1)); });
      case UnaryOp::sign: return map2_grad<T>(gy, gy, gx, [](A, A) { return A(0); });
    }
  });
}

// ---- clamp ----

// Written as two selects, not std::min/max, so NaN passes through (x < lo is false for NaN).
void clamp(const Tensor& x, double lo, double hi, const Tensor& out) {
  dispatch_all(x.dtype(), "clamp", [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      detail::fail("clamp: not supported on bool tensors");
    } else {
      using A = acc_t<T>;
      A l = detail::clamp_bound<A>(lo), h = detail::clamp_bound<A>(hi);
      map1<T>(x, out, [l, h](A v) {
        A r = v < l ? l : v;
        return r > h ? h : r;
      });
    }
  });
}

void clamp_backward(const Tensor& gy, const Tensor& x, double lo, double hi, const Tensor& gx) {
  dispatch_float(x.dtype(), "clamp_backward", [&]<class T>() {
    using A = acc_t<T>;
    A l = A(lo), h = A(hi);
    map2_grad<T>(gy, x, gx, [l, h](A g, A v) { return v >= l && v <= h ? g : A(0); });
  });
}

// ---- binary ----

template <class A>
static A pow_of(A a, A b) {
  if constexpr (std::is_integral_v<A>) return A(std::llround(std::pow(double(a), double(b))));
  else return std::pow(a, b);
}

// Calls k with the arithmetic functor for op (a, b in the compute type A).
template <class A, class K>
static void with_binary(BinaryOp op, K&& k) {
  switch (op) {
    case BinaryOp::add: return k([](A a, A b) { return a + b; });
    case BinaryOp::sub: return k([](A a, A b) { return a - b; });
    case BinaryOp::mul: return k([](A a, A b) { return a * b; });
    case BinaryOp::div: return k([](A a, A b) { return a / b; });
    case BinaryOp::maximum: return k([](A a, A b) { return a > b || a != a ? a : b; });
    case BinaryOp::minimum: return k([](A a, A b) { return a < b || a != a ? a : b; });
    case BinaryOp::pow: return k([](A a, A b) { return pow_of(a, b); });
    case BinaryOp::eq: return k([](A a, A b) { return a == b; });
    case BinaryOp::ne: return k([](A a, A b) { return a != b; });
    case BinaryOp::lt: return k([](A a, A b) { return a < b; });
    case BinaryOp::le: return k([](A a, A b) { return a <= b; });
    case BinaryOp::gt: return k([](A a, A b) { return a > b; });
    case BinaryOp::ge: return k([](A a, A b) { return a >= b; });
  }
}

template <class T, class O, class F>
static void map_binary(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* ap = ptr<T>(a);
  const T* bp = ptr<T>(b);
  O* op = ptr<O>(out);
  using A = acc_t<T>;
  bool stream = out.nbytes() >= stream_threshold();
  for_each_row<3>(out.shape(), {out.strides(), a.strides(), b.strides()},
                  [&](auto off, int64_t n, auto st) {
    O* o = op + off[0];
    const T* x = ap + off[1];
    const T* y = bp + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1)  // the common case: vectorizes
      store_row(o, n, stream, [&](int64_t i) { return O(f(A(x[i]), A(y[i]))); });
    else if (st[0] == 1 && st[1] == 1 && st[2] == 0)  // bias-like broadcast of b
      store_row(o, n, stream, [&](int64_t i) { return O(f(A(x[i]), A(y[0]))); });
    else
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = O(f(A(x[i * st[1]]), A(y[i * st[2]])));
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    with_binary<A>(op, [&](auto f) {
      if (is_comparison(op)) map_binary<T, bool>(a, b, out, f);
      else map_binary<T, T>(a, b, out, f);
    });
  });
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_left, const Tensor& out) {
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    A sv = A(s);
    with_binary<A>(op, [&](auto f) {
      auto run = [&]<class O>() {
        const T* ap = ptr<T>(a);
        O* op_ = ptr<O>(out);
        bool stream = out.nbytes() >= stream_threshold();
        for_each_row<2>(out.shape(), {out.strides(), a.strides()}, [&](auto off, int64_t n, auto st) {
          O* o = op_ + off[0];
          const T* x = ap + off[1];
          if (scalar_left)
            for (int64_t i = 0; i < n; ++i) o[i * st[0]] = O(f(sv, A(x[i * st[1]])));
          else if (st[0] == 1 && st[1] == 1)
            store_row(o, n, stream, [&](int64_t i) { return O(f(A(x[i]), sv)); });
          else
            for (int64_t i = 0; i < n; ++i) o[i * st[0]] = O(f(A(x[i * st[1]]), sv));
        });
      };
      if (is_comparison(op)) run.template operator()<bool>();
      else run.template operator()<T>();
    });
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "where", [&]<class T>() {
    const bool* cp = ptr<bool>(cond);
    const T* ap = ptr<T>(a);
    const T* bp = ptr<T>(b);
    T* op = ptr<T>(out);
    for_each_row<4>(out.shape(), {out.strides(), cond.strides(), a.strides(), b.strides()},
                    [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i)
        op[off[0] + i * st[0]] =
            cp[off[1] + i * st[1]] ? ap[off[2] + i * st[2]] : bp[off[3] + i * st[3]];
    });
  });
}

}  // namespace fathom::cpu
