// CPU cross-entropy of logits [N, C] against class indices [N], forward and backward, through
// the log-sum-exp of each row (max subtracted first), so large logits never overflow.
// Per-row losses and the backward scale are f32, or f64 for f64 logits.
#include <cmath>
#include <utility>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

namespace {

template <class T>
using loss_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// e[j] = exp(x[j] - max) for one row; returns max and the sum of e (in S).
template <class T, class S>
std::pair<acc_t<T>, S> shifted_exps(const T* x, acc_t<T>* e, int64_t n) {
  using A = acc_t<T>;
  A m = row_max(x, n);
  exp_row(x, m, e, n);
  return {m, row_sum<S>(e, n)};
}

template <class Body>
void for_rows(int64_t rows, int64_t cols, Body body) {
  parallel_for(rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)), body);
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                   const Tensor& losses) {
  int64_t N = logits.size(0), C = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    using A = acc_t<T>;
    using S = float_acc_t<T>;
    using L = loss_t<T>;
    const T* xp = ptr<T>(logits);
    const int64_t* tp = ptr<int64_t>(targets);
    L* lp = ptr<L>(losses);
    for_rows(N, C, [&](int64_t b, int64_t e) {
      std::vector<A> ex(static_cast<size_t>(C));
      for (int64_t i = b; i < e; ++i) {
        int64_t t = tp[i];
        if (t == ignore_index) {
          lp[i] = L(0);
          continue;
        }
        const T* x = xp + i * C;
        auto [m, sum] = shifted_exps<T, S>(x, ex.data(), C);
        // loss = logsumexp(x) - x[t] = log(sum) - (x[t] - m)
        lp[i] = L(std::log(sum) - S(A(x[t]) - m));
      }
    });
  });
}

// grad_logits = scale * (softmax(logits) - onehot(t)); rows with an ignored target get 0.
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                            const Tensor& scale, const Tensor& grad_logits) {
  int64_t N = logits.size(0), C = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    using A = acc_t<T>;
    using S = float_acc_t<T>;
    using L = loss_t<T>;
    const T* xp = ptr<T>(logits);
    const int64_t* tp = ptr<int64_t>(targets);
    T* gp = ptr<T>(grad_logits);
    S sc = S(*ptr<L>(scale));
    for_rows(N, C, [&](int64_t b, int64_t e) {
      std::vector<A> ex(static_cast<size_t>(C));
      for (int64_t i = b; i < e; ++i) {
        int64_t t = tp[i];
        T* g = gp + i * C;
        if (t == ignore_index) {
          for (int64_t j = 0; j < C; ++j) g[j] = T(A(0));
          continue;
        }
        auto [m, sum] = shifted_exps<T, S>(xp + i * C, ex.data(), C);
        A f = A(sc / sum);
        for (int64_t j = 0; j < C; ++j) g[j] = T(ex[size_t(j)] * f);
        g[t] = T(ex[size_t(t)] * f - A(sc));
      }
    });
  });
}

}  // namespace fathom::cpu
