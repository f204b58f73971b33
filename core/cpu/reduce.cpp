// CPU reductions: x [outer, r, inner] contig -> out [outer, inner]. The reference for the CUDA
// kernels, and deterministic: how the work is cut depends only on the shape, never on the
// number of threads, and partial results always merge in the same order.
#include <limits>
#include <type_traits>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

namespace {

constexpr int kLanes = kRowLanes;
// Columns one work item accumulates at a time when inner > 1: small enough to stay in L1.
constexpr int64_t kCols = 1024;

// A reducer R provides: Acc, init(), step(acc, value, k) for element k of the reduced dim,
// merge(acc, later) to fold in a partial result, and store(i, acc) for output element i.
template <class T, class R>
typename R::Acc reduce_run(const T* x, int64_t k0, int64_t k1, const R& red) {
  using Acc = typename R::Acc;
  Acc lane[kLanes];
  for (auto& l : lane) l = red.init();
  int64_t k = k0;
  for (; k + kLanes <= k1; k += kLanes)
    for (int l = 0; l < kLanes; ++l) red.step(lane[l], x[k + l], k + l);
  for (; k < k1; ++k) red.step(lane[0], x[k], k);
  Acc a = lane[0];
  for (int l = 1; l < kLanes; ++l) red.merge(a, lane[l]);
  return a;
}

template <class T, class R>
void reduce_driver(const T* x, int64_t outer, int64_t r, int64_t inner, const R& red) {
  using Acc = typename R::Acc;
  int64_t cw = std::min(inner, kCols), chunks = (inner + cw - 1) / cw;
  // Few long reductions (a full sum, a column sum of a tall matrix): cut r into blocks so every
  // thread helps. The block count is a function of the shape alone.
  int64_t splits = 1;
  if (outer * chunks < 64 && r * cw > 4 * kParallelGrain)
    splits = std::min<int64_t>(64, r * cw / (2 * kParallelGrain));
  int64_t rb = (r + splits - 1) / splits;
  splits = (r + rb - 1) / rb;
  std::vector<Acc> partial(splits > 1 ? size_t(splits * outer * inner) : 0);
  int64_t items = outer * chunks * splits;
  parallel_for(items, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, rb * cw)),
               [&](int64_t b, int64_t e) {
    Acc buf[kCols];
    for (int64_t u = b; u < e; ++u) {
      int64_t s = u % splits, c = (u / splits) % chunks, o = u / (splits * chunks);
      int64_t k0 = s * rb, k1 = std::min(r, k0 + rb), j0 = c * cw, n = std::min(cw, inner - j0);
      if (inner == 1) {
        buf[0] = reduce_run(x + o * r, k0, k1, red);
      } else {
        for (int64_t j = 0; j < n; ++j) buf[j] = red.init();
        for (int64_t k = k0; k < k1; ++k) {
          const T* row = x + (o * r + k) * inner + j0;
          for (int64_t j = 0; j < n; ++j) red.step(buf[j], row[j], k);
        }
      }
      if (splits == 1)
        for (int64_t j = 0; j < n; ++j) red.store(o * inner + j0 + j, buf[j]);
      else
        for (int64_t j = 0; j < n; ++j) partial[size_t((s * outer + o) * inner + j0 + j)] = buf[j];
    }
  });
  if (splits == 1) return;
  int64_t m = outer * inner;
  parallel_for(m, std::max<int64_t>(1, kParallelGrain / splits), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      Acc a = partial[size_t(i)];
      for (int64_t s = 1; s < splits; ++s) red.merge(a, partial[size_t(s * m + i)]);
      red.store(i, a);
    }
  });
}

// f32 sums accumulate in f64: as fast as f32 here (the loop is bound by memory, and the
// conversion is one instruction per load), and the result no longer depends on length or
// order to any precision an f32 output can show. Half types accumulate in f32, as on the GPU;
// integers and bool in i64.
template <class T>
using sum_acc_t =
    std::conditional_t<std::is_floating_point_v<acc_t<T>>, float_acc_t<T>, int64_t>;

template <class T, class O>
struct SumReducer {
  using Acc = sum_acc_t<T>;
  O* out;
  Acc divisor;  // r for a mean, 1 for a sum
  Acc init() const { return Acc(0); }
  void step(Acc& a, T v, int64_t) const { a += Acc(acc_t<T>(v)); }
  void merge(Acc& a, Acc b) const { a += b; }
  void store(int64_t i, Acc a) const { out[i] = O(a / divisor); }
};

// Squares accumulate like sums (f64 for f32, f32 for halves); an inf or NaN element carries
// through to the result.
template <class T>
struct SumSquaresReducer {
  using Acc = float_acc_t<T>;
  double* out;
  Acc init() const { return Acc(0); }
  void step(Acc& a, T v, int64_t) const {
    Acc x = Acc(acc_t<T>(v));
    a += x * x;
  }
  void merge(Acc& a, Acc b) const { a += b; }
  void store(int64_t i, Acc a) const { out[i] = double(a); }
};

// NaN wins, as in PyTorch: once an accumulator is NaN no comparison replaces it.
template <class T, bool kMax>
struct ExtremumReducer {
  using Acc = acc_t<T>;
  T* out;
  static constexpr Acc identity() {
    using L = std::numeric_limits<Acc>;
    if constexpr (L::has_infinity) return kMax ? -L::infinity() : L::infinity();
    else return kMax ? L::lowest() : L::max();
  }
  Acc init() const { return identity(); }
  void step(Acc& a, T v, int64_t) const { merge(a, Acc(v)); }
  void merge(Acc& a, Acc v) const {
    bool better = kMax ? v > a : v < a;
    a = (better || v != v) ? v : a;
  }
  void store(int64_t i, Acc a) const { out[i] = T(a); }
};

// First index of the maximum; NaN counts as the maximum (PyTorch). merge is order-free: ties
// go to the smaller index, so lanes and blocks may combine in any grouping.
template <class T>
struct ArgmaxReducer {
  using V = acc_t<T>;
  struct Acc {
    V v{};
    int64_t i = -1;
  };
  int64_t* out;
  Acc init() const { return {}; }
  static bool beats(V v, int64_t i, const Acc& a) {
    if (a.i < 0) return true;
    bool vn = v != v, an = a.v != a.v;
    if (vn || an) return vn && (!an || i < a.i);
    return v > a.v || (v == a.v && i < a.i);
  }
  void step(Acc& a, T x, int64_t k) const {
    V v = V(x);
    if (beats(v, k, a)) a = {v, k};
  }
  void merge(Acc& a, const Acc& b) const {
    if (b.i >= 0 && beats(b.v, b.i, a)) a = b;
  }
  void store(int64_t i, const Acc& a) const { out[i] = a.i; }
};

}  // namespace

void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner,
            const Tensor& out) {
  dispatch_all(x.dtype(), "reduce", [&]<class T>() {
    const T* xp = ptr<T>(x);
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean: {
        using Acc = sum_acc_t<T>;
        if constexpr (std::is_integral_v<Acc>) {
          FATHOM_CHECK(op == ReduceOp::sum, "mean: integer input ", x.desc(),
                       " reached the CPU kernel; the dispatch point rejects it");
          reduce_driver(xp, outer, r, inner, SumReducer<T, int64_t>{ptr<int64_t>(out), 1});
        } else {
          Acc div = op == ReduceOp::mean ? Acc(r) : Acc(1);
          reduce_driver(xp, outer, r, inner, SumReducer<T, T>{ptr<T>(out), div});
        }
        return;
      }
      case ReduceOp::max:
        return reduce_driver(xp, outer, r, inner, ExtremumReducer<T, true>{ptr<T>(out)});
      case ReduceOp::min:
        return reduce_driver(xp, outer, r, inner, ExtremumReducer<T, false>{ptr<T>(out)});
    }
  });
}

void sum_squares(const std::vector<Tensor>& xs, const Tensor& out) {
  double* o = ptr<double>(out);
  for (size_t i = 0; i < xs.size(); ++i)
    dispatch_float(xs[i].dtype(), "sum_squares", [&]<class T>() {
      reduce_driver(ptr<T>(xs[i]), 1, xs[i].numel(), 1, SumSquaresReducer<T>{o + i});
    });
}

void argmax(const Tensor& x, int64_t outer, int64_t r, int64_t inner, const Tensor& out) {
  dispatch_all(x.dtype(), "argmax", [&]<class T>() {
    reduce_driver(ptr<T>(x), outer, r, inner, ArgmaxReducer<T>{ptr<int64_t>(out)});
  });
}

}  // namespace fathom::cpu
