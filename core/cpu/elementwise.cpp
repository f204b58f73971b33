// CPU elementwise kernels: the reference for the CUDA ones. Half types load as f32, compute,
// and round once on store.
#include <cmath>
#include <cstring>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/binary_ops.h"
#include "fathom/core/cpu/loops.h"
#include "fathom/core/cpu/unary_ops.h"

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

// The f32 four-lane form of a functor, where it has one (core/cpu/unary_ops.h).
template <class T, class F>
constexpr bool kHasX4 = std::is_same_v<T, float> && requires(f32x4 v) { F::forward_x4(v); };
// A misspelt forward_x4 would fall back to libm's tanhf without a word (and a slower GPT step).
static_assert(kHasX4<float, Gelu> && !kHasX4<double, Gelu>);

template <class T, class F>
static void unary_with(const Tensor& x, const Tensor& out) {
  if constexpr (kHasX4<T, F>)
    map_x4(out, x, Tensor(), [](f32x4 v, f32x4) { return F::forward_x4(v); });
  else
    map1<T>(x, out, [](acc_t<T> v) { return F::forward(v); });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_float(x.dtype(), op_name(op), [&]<class T>() {
    switch (op) {
#define FATHOM_CASE(name, reads, cpu_f, cuda_f) \
  case UnaryOp::name: return unary_with<T, cpu_f>(x, out);
      FATHOM_UNARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
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

template <class T, class F>
static void unary_backward_with(const Tensor& gy, const Tensor& s, const Tensor& gx) {
  if constexpr (kHasX4<T, F>)
    map_x4(gx, gy, s, [](f32x4 g, f32x4 v) { return F::backward_x4(g, v); });
  else
    map2_grad<T>(gy, s, gx, [](acc_t<T> g, acc_t<T> v) { return F::backward(g, v); });
}

void unary_backward(UnaryOp op, const Tensor& gy, const Tensor& s, const Tensor& gx) {
  dispatch_float(gy.dtype(), op_name(op), [&]<class T>() {
    switch (op) {
#define FATHOM_CASE(name, reads, cpu_f, cuda_f) \
  case UnaryOp::name: return unary_backward_with<T, cpu_f>(gy, s, gx);
      FATHOM_UNARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
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

// Calls k.template operator()<F, Op>() with op's functor type F and op as a constant.
template <class K>
static void with_binary(BinaryOp op, K&& k) {
  switch (op) {
#define FATHOM_CASE(name, kind, swapped, cpu_f, cuda_f) \
  case BinaryOp::name: return k.template operator()<cpu_f, BinaryOp::name>();
    FATHOM_BINARY_OPS(FATHOM_CASE)
#undef FATHOM_CASE
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

// The output element type of op on inputs T.
template <class T, BinaryOp Op>
using binary_out_t = std::conditional_t<is_comparison(Op), bool, T>;

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    with_binary(op, [&]<class F, BinaryOp Op>() {
      map_binary<T, binary_out_t<T, Op>>(a, b, out, F{});
    });
  });
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_left, const Tensor& out) {
  FATHOM_CHECK(!scalar_left || !swapped_op(op), op_name(op),
               ": internal error: a left scalar reached the backend for an op with a swapped form");
  dispatch_all(a.dtype(), op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    A sv = A(s);
    with_binary(op, [&]<class F, BinaryOp Op>() {
      using O = binary_out_t<T, Op>;
      F f;
      const T* ap = ptr<T>(a);
      O* op_ = ptr<O>(out);
      bool stream = out.nbytes() >= stream_threshold();
      for_each_row<2>(out.shape(), {out.strides(), a.strides()}, [&](auto off, int64_t n, auto st) {
        O* o = op_ + off[0];
        const T* x = ap + off[1];
        if constexpr (!swapped_op(Op))
          if (scalar_left) {
            for (int64_t i = 0; i < n; ++i) o[i * st[0]] = O(f(sv, A(x[i * st[1]])));
            return;
          }
        if (st[0] == 1 && st[1] == 1)
          store_row(o, n, stream, [&](int64_t i) { return O(f(A(x[i]), sv)); });
        else
          for (int64_t i = 0; i < n; ++i) o[i * st[0]] = O(f(A(x[i * st[1]]), sv));
      });
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
