// CPU softmax and log-softmax over the rows of x [rows, cols], forward and backward. Stable:
// every row subtracts its max before exp. Threads take whole rows.
#include <cmath>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

namespace {

// One row. e is scratch for the exponentials in acc_t<T>: y itself when T is f32/f64, so the
// values are rounded once, on the final store.
template <class T>
void softmax_row(const T* x, T* y, acc_t<T>* e, int64_t n, bool log) {
  using A = acc_t<T>;
  using S = float_acc_t<T>;
  A m = row_max(x, n);
  exp_row(x, m, e, n);
  S sum = row_sum<S>(e, n);
  if (!log) {
    A inv = A(S(1) / sum);
    for (int64_t i = 0; i < n; ++i) y[i] = T(e[i] * inv);
  } else {
    // (x - m) - log(sum) rather than x - (m + log(sum)): exact in the max element.
    A lse = A(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = T((A(x[i]) - m) - lse);
  }
}

}  // namespace

void softmax(const Tensor& x, const Tensor& y, bool log) {
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_float(x.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    using A = acc_t<T>;
    const T* xp = ptr<T>(x);
    T* yp = ptr<T>(y);
    parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)),
                 [&](int64_t b, int64_t e) {
      std::vector<A> scratch(std::is_same_v<T, A> ? 0 : size_t(cols));
      for (int64_t r = b; r < e; ++r) {
        T* yr = yp + r * cols;
        A* er;
        if constexpr (std::is_same_v<T, A>) er = yr;
        else er = scratch.data();
        softmax_row(xp + r * cols, yr, er, cols, log);
      }
    });
  });
}

// softmax:     grad_x = y * (grad_y - sum(grad_y * y))
// log_softmax: grad_x = grad_y - exp(y) * sum(grad_y)
void softmax_backward(const Tensor& grad_y, const Tensor& y, const Tensor& grad_x, bool log) {
  int64_t rows = y.size(0), cols = y.size(1);
  dispatch_float(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&]<class T>() {
    using A = acc_t<T>;
    using S = float_acc_t<T>;
    const T* gp = ptr<T>(grad_y);
    const T* yp = ptr<T>(y);
    T* op = ptr<T>(grad_x);
    parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)),
                 [&](int64_t b, int64_t e) {
      std::vector<A> probs(log ? size_t(cols) : 0);
      for (int64_t r = b; r < e; ++r) {
        const T* g = gp + r * cols;
        const T* yr = yp + r * cols;
        T* o = op + r * cols;
        if (!log) {
          A dot = A(row_dot<S>(g, yr, cols));
          for (int64_t i = 0; i < cols; ++i) o[i] = T(A(yr[i]) * (A(g[i]) - dot));
        } else {
          A sum = A(row_sum<S>(g, cols));
          exp_row(yr, A(0), probs.data(), cols);
          for (int64_t i = 0; i < cols; ++i) o[i] = T(A(g[i]) - probs[size_t(i)] * sum);
        }
      }
    });
  });
}

}  // namespace fathom::cpu
