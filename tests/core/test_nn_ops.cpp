#include <cstring>
#include <functional>
#include <limits>

#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const std::vector<DType> kFloats = {kFloat32, kFloat64, kBFloat16, kFloat16};

// Central differences of f with respect to each element of x (f64, contiguous), in place.
std::vector<double> numeric_grad(const std::function<double()>& f, const Tensor& x,
                                 double h = 1e-6) {
  double* p = x.data<double>();
  std::vector<double> g(size_t(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {
    double old = p[i];
    p[i] = old + h;
    double fp = f();
    p[i] = old - h;
    double fm = f();
    p[i] = old;
    g[size_t(i)] = (fp - fm) / (2 * h);
  }
  return g;
}

double dot(const Tensor& a, const Tensor& b) {
  auto va = to_vector(a), vb = to_vector(b);
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

int64_t cols_of(const Shape& s) {
  return s.empty() ? 1 : s.back();
}

std::vector<double> ref_softmax(const std::vector<double>& v, int64_t cols, bool log) {
  std::vector<double> out(v.size());
  for (size_t r0 = 0; cols && r0 < v.size(); r0 += size_t(cols)) {
    double m = -kInf, s = 0;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, v[r0 + j]);
    for (int64_t j = 0; j < cols; ++j) s += std::exp(v[r0 + j] - m);
    for (int64_t j = 0; j < cols; ++j)
      out[r0 + j] = log ? v[r0 + j] - m - std::log(s) : std::exp(v[r0 + j] - m) / s;
  }
  return out;
}

// Row-major flat index of idx in shape.
int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

// Maps each element of index_select's output (x.shape with `dim` replaced by index_shape) to
// the element of x it reads, given the index values.
std::vector<int64_t> gather_map(const Shape& xs, int64_t dim, const Shape& index_shape,
                                const std::vector<double>& index) {
  Shape os(xs.begin(), xs.begin() + dim);
  os.insert(os.end(), index_shape.begin(), index_shape.end());
  os.insert(os.end(), xs.begin() + dim + 1, xs.end());
  std::vector<int64_t> map(size_t(numel_of(os)));
  size_t k = index_shape.size();
  for (int64_t o = 0; o < numel_of(os); ++o) {
    auto u = unravel(o, os);
    std::vector<int64_t> iu(u.begin() + dim, u.begin() + dim + int64_t(k));
    std::vector<int64_t> pos(u.begin(), u.begin() + dim);
    pos.push_back(int64_t(index[size_t(ravel(iu, index_shape))]));
    pos.insert(pos.end(), u.begin() + dim + int64_t(k), u.end());
    map[size_t(o)] = ravel(pos, xs);
  }
  return map;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

// Runs f on one thread, then restores the thread count.
template <class F>
auto single_threaded(F f) {
  int before = get_num_threads();
  set_num_threads(1);
  auto r = f();
  set_num_threads(before);
  return r;
}

}  // namespace

TEST_CASE("softmax and log_softmax match an f64 reference", "[core]") {
  Generator g(21);
  std::vector<Shape> shapes = {{}, {1}, {7}, {3, 5}, {2, 3, 33}, {4, 0}, {0, 5}, {5, 1}, {3, 1000}};
  for (DType dt : kFloats)
    for (const Shape& s : shapes)
      for (double offset : {0.0, 100.0})
        for (int layout = 0; layout < 2; ++layout)
          for (bool log : {false, true}) {
            Tensor x = ops::to(normal(s, offset, 3.0, kFloat64, &g), dt);
            Tensor xin = layout ? noncontiguous(x) : x;
            Tensor y = log ? ops::log_softmax(xin) : ops::softmax(xin);
            INFO((log ? "log_softmax " : "softmax ")
                 << x.desc() << " offset " << offset << " layout " << layout);
            REQUIRE(y.shape() == s);
            CHECK(y.dtype() == dt);
            auto want = ref_softmax(to_vector(x), cols_of(s), log);
            expect_close(y, want, tol(dt) * 4, tol(dt), "softmax");
          }
  // -inf logits (a causal mask) get exactly 0 probability.
  Tensor m = from_vector(std::vector<double>{0, -kInf, 1, -kInf}, {2, 2});
  CHECK(to_vector(ops::softmax(m)) == std::vector<double>{1, 0, 1, 0});
  CHECK_THROWS_WITH(ops::softmax(zeros({3}, kInt64)),
                    Catch::Contains("softmax: expected a floating-point tensor, got [3] i64 cpu"));
}

TEST_CASE("softmax backward matches finite differences and an f64 reference", "[core]") {
  Generator g(22);
  for (bool log : {false, true}) {
    auto fwd = [&](const Tensor& x) { return log ? ops::log_softmax(x) : ops::softmax(x); };
    auto bwd = [&](const Tensor& gy, const Tensor& y) {
      return log ? ops::log_softmax_backward(gy, y) : ops::softmax_backward(gy, y);
    };
    for (const Shape& s : std::vector<Shape>{{1, 1}, {3, 7}, {2, 3, 5}}) {
      Tensor x = randn(s, kFloat64, &g), gy = randn(s, kFloat64, &g);
      auto want = numeric_grad([&] { return dot(gy, fwd(x)); }, x);
      INFO((log ? "log_softmax" : "softmax") << " " << x.desc());
      expect_close(bwd(noncontiguous(gy), fwd(x)), want, 1e-6, 1e-8, "softmax_backward fd");
    }
    for (DType dt : kFloats)
      for (const Shape& s : std::vector<Shape>{{}, {9}, {4, 33}, {0, 3}, {2, 1000}}) {
        Tensor y = fwd(ops::to(randn(s, kFloat64, &g), dt));
        Tensor gy = ops::to(randn(s, kFloat64, &g), dt);
        auto yv = to_vector(y), gv = to_vector(gy);
        std::vector<double> want(yv.size());
        int64_t c = cols_of(s);
        for (size_t r0 = 0; r0 < yv.size(); r0 += size_t(c)) {
          double acc = 0;
          for (int64_t j = 0; j < c; ++j) acc += log ? gv[r0 + j] : gv[r0 + j] * yv[r0 + j];
          for (int64_t j = 0; j < c; ++j)
            want[r0 + j] =
                log ? gv[r0 + j] - std::exp(yv[r0 + j]) * acc : yv[r0 + j] * (gv[r0 + j] - acc);
        }
        INFO((log ? "log_softmax" : "softmax") << " backward " << y.desc());
        expect_close(bwd(gy, noncontiguous(y)), want, tol(dt) * 4, tol(dt) * 4, "softmax_backward");
      }
  }
  CHECK_THROWS_WITH(
      ops::softmax_backward(zeros({2, 3}), zeros({3, 2})),
      Catch::Contains("softmax_backward: grad_y [2, 3] f32 cpu does not match y [3, 2]"));
}

namespace {

struct LnRef {
  std::vector<double> y, mean, rstd;
};

LnRef ref_layer_norm(const std::vector<double>& x, int64_t C, const std::vector<double>* w,
                     const std::vector<double>* b, double eps) {
  LnRef r;
  r.y.resize(x.size());
  for (size_t r0 = 0; C && r0 < x.size(); r0 += size_t(C)) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < C; ++j) mu += x[r0 + j];
    mu /= double(C);
    for (int64_t j = 0; j < C; ++j) var += (x[r0 + j] - mu) * (x[r0 + j] - mu);
    double rs = 1 / std::sqrt(var / double(C) + eps);
    r.mean.push_back(mu);
    r.rstd.push_back(rs);
    for (int64_t j = 0; j < C; ++j)
      r.y[r0 + j] = (x[r0 + j] - mu) * rs * (w ? (*w)[size_t(j)] : 1) + (b ? (*b)[size_t(j)] : 0);
  }
  return r;
}

}  // namespace

TEST_CASE("layer_norm matches an f64 reference, with and without weight and bias", "[core]") {
  Generator g(23);
  std::vector<Shape> shapes = {{1, 1}, {3, 7}, {2, 3, 33}, {0, 4}, {4, 1}, {2, 1000}, {5}};
  for (DType dt : kFloats)
    for (const Shape& s : shapes)
      for (int affine = 0; affine < 4; ++affine)
        for (int layout = 0; layout < 2; ++layout) {
          int64_t C = s.back();
          // An offset far above the spread: a one-pass variance would cancel away.
          double offset = dt == kFloat32 || dt == kFloat64 ? 50 : 4;
          Tensor x = ops::to(normal(s, offset, 1.0, kFloat64, &g), dt);
          Tensor w = affine & 1 ? ops::to(randn({C}, kFloat64, &g), dt) : Tensor();
          Tensor b = affine & 2 ? ops::to(randn({C}, kFloat64, &g), dt) : Tensor();
          auto [y, mean, rstd] = ops::layer_norm(layout ? noncontiguous(x) : x, w, b, 1e-5);
          std::vector<double> wv, bv;
          if (w.defined()) wv = to_vector(w);
          if (b.defined()) bv = to_vector(b);
          auto want = ref_layer_norm(to_vector(x), C, w.defined() ? &wv : nullptr,
                                     b.defined() ? &bv : nullptr, 1e-5);
          INFO(x.desc() << " affine " << affine << " layout " << layout);
          REQUIRE(y.shape() == s);
          CHECK(mean.dtype() == (dt == kFloat64 ? kFloat64 : kFloat32));
          expect_close(y, want.y, tol(dt) * 4, tol(dt) * 4, "layer_norm y");
          double st = dt == kFloat64 ? 1e-12 : 1e-6;
          expect_close(mean, want.mean, st, 0, "layer_norm mean");
          expect_close(rstd, want.rstd, st * 10, 0, "layer_norm rstd");
        }
  CHECK_THROWS_WITH(
      ops::layer_norm(zeros({2, 3}), zeros({4}), Tensor(), 1e-5),
      Catch::Contains("layer_norm: weight [4] f32 cpu does not match x [2, 3] f32 cpu"));
  CHECK_THROWS_WITH(ops::layer_norm(zeros({2, 3}), Tensor(), zeros({3}, kFloat64), 1e-5),
                    Catch::Contains("layer_norm: bias [3] f64 cpu does not match"));
  CHECK_THROWS_WITH(ops::layer_norm(zeros({}), Tensor(), Tensor(), 1e-5),
                    Catch::Contains("layer_norm: expected at least one dim"));
}

TEST_CASE("layer_norm backward matches finite differences of the forward in f64", "[core]") {
  Generator g(24);
  for (const Shape& s : std::vector<Shape>{{3, 7}, {2, 3, 5}, {4, 1}})
    for (int affine = 0; affine < 4; ++affine) {
      int64_t C = s.back();
      Tensor x = normal(s, 2.0, 1.5, kFloat64, &g), gy = randn(s, kFloat64, &g);
      Tensor w = affine & 1 ? randn({C}, kFloat64, &g) : Tensor();
      Tensor b = affine & 2 ? randn({C}, kFloat64, &g) : Tensor();
      auto loss = [&] { return dot(gy, std::get<0>(ops::layer_norm(x, w, b, 1e-5))); };
      auto [y, mean, rstd] = ops::layer_norm(x, w, b, 1e-5);
      auto [gx, gw, gb] =
          ops::layer_norm_backward(noncontiguous(gy), x, w, mean, rstd, b.defined());
      INFO(x.desc() << " affine " << affine);
      expect_close(gx, numeric_grad(loss, x), 1e-6, 1e-7, "grad_x");
      CHECK(gw.defined() == w.defined());
      CHECK(gb.defined() == b.defined());
      if (w.defined()) expect_close(gw, numeric_grad(loss, w), 1e-6, 1e-7, "grad_weight");
      if (b.defined()) expect_close(gb, numeric_grad(loss, b), 1e-6, 1e-7, "grad_bias");
    }
}

TEST_CASE("layer_norm backward in every dtype agrees with f64, deterministically", "[core]") {
  Generator g(25);
  for (DType dt : kFloats)
    for (const Shape& s : std::vector<Shape>{{1, 1}, {5, 9}, {2, 3, 33}, {0, 4}, {300, 64}}) {
      int64_t C = s.back();
      Tensor x = ops::to(randn(s, kFloat64, &g), dt), gy = ops::to(randn(s, kFloat64, &g), dt);
      Tensor w = ops::to(randn({C}, kFloat64, &g), dt);
      auto [y, mean, rstd] = ops::layer_norm(x, w, zeros({C}, dt), 1e-5);
      auto [gx, gw, gb] = ops::layer_norm_backward(gy, x, w, mean, rstd, true);
      // The same inputs widened to f64 give the reference.
      Tensor x64 = ops::to(x, kFloat64), w64 = ops::to(w, kFloat64);
      auto [y64, m64, r64] = ops::layer_norm(x64, w64, Tensor(), 1e-5);
      auto [gx64, gw64, gb64] =
          ops::layer_norm_backward(ops::to(gy, kFloat64), x64, w64, m64, r64, true);
      INFO(x.desc());
      double rows = double(numel_of(s) / C);
      expect_close(gx, gx64, tol(dt) * 4, tol(dt) * 8, "grad_x");
      expect_close(gw, gw64, tol(dt) * 4, tol(dt) * 4 * std::sqrt(rows + 1), "grad_weight");
      expect_close(gb, gb64, tol(dt) * 4, tol(dt) * 4 * std::sqrt(rows + 1), "grad_bias");
      auto again =
          single_threaded([&] { return ops::layer_norm_backward(gy, x, w, mean, rstd, true); });
      CHECK(same_bits(std::get<1>(again), gw));
      CHECK(same_bits(std::get<2>(again), gb));
    }
  CHECK_THROWS_WITH(
      ops::layer_norm_backward(zeros({2, 3}), zeros({2, 3}), Tensor(), zeros({3}), zeros({2}),
                               false),
      Catch::Contains("layer_norm_backward: saved statistics [3] f32 cpu do not match"));
}

namespace {

// Mean over counted rows of logsumexp(row) - row[t]; NaN when none counts.
double ref_cross_entropy(const std::vector<double>& x, const std::vector<double>& t, int64_t C,
                         int64_t ignore) {
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (int64_t(t[i]) == ignore) continue;
    double m = -kInf, s = 0;
    for (int64_t j = 0; j < C; ++j) m = std::max(m, x[i * C + j]);
    for (int64_t j = 0; j < C; ++j) s += std::exp(x[i * C + j] - m);
    total += m + std::log(s) - x[i * C + size_t(t[i])];
    ++count;
  }
  return total / double(count);
}

// Random class indices in [0, C) with about one row in four set to `ignore`.
Tensor random_targets(int64_t N, int64_t C, int64_t ignore, DType dt, Generator& g) {
  auto u = to_vector(uniform({N}, 0, double(C), kFloat64, &g));
  auto coin = to_vector(uniform({N}, 0, 1, kFloat64, &g));
  std::vector<int64_t> t(static_cast<size_t>(N));
  for (size_t i = 0; i < t.size(); ++i)
    t[i] = coin[i] < 0.25 ? ignore : std::min(int64_t(u[i]), C - 1);
  return ops::to(from_vector(t, {N}), dt);
}

}  // namespace

TEST_CASE("cross_entropy matches an f64 reference, with ignored targets", "[core]") {
  Generator g(26);
  struct NC {
    int64_t n, c;
  };
  for (DType dt : kFloats)
    for (NC nc : std::vector<NC>{{1, 1}, {5, 7}, {64, 1000}, {0, 5}, {33, 3}})
      for (DType tdt : {kInt64, kInt32})
        for (int64_t ignore : {int64_t(-100), int64_t(0)})
          for (double offset : {0.0, 1000.0}) {
            Tensor x = ops::to(normal({nc.n, nc.c}, offset, 2.0, kFloat64, &g), dt);
            Tensor t = random_targets(nc.n, nc.c, ignore, tdt, g);
            Tensor loss = ops::cross_entropy(noncontiguous(x), t, ignore);
            INFO(x.desc() << " targets " << t.desc() << " ignore " << ignore << " offset "
                          << offset);
            CHECK(loss.shape() == Shape{});
            CHECK(loss.dtype() == (dt == kFloat64 ? kFloat64 : kFloat32));
            double want = ref_cross_entropy(to_vector(x), to_vector(t), nc.c, ignore);
            double rt = dt == kFloat64 ? 1e-10 : 1e-5;
            expect_close(loss, {want}, rt, rt, "cross_entropy");
          }
  // Every target ignored: NaN, as PyTorch's mean over nothing; the gradient is then 0.
  Tensor t = from_vector(std::vector<int64_t>{-100, -100}, {2});
  CHECK(std::isnan(ops::cross_entropy(zeros({2, 3}), t).item<double>()));
  CHECK(to_vector(ops::cross_entropy_backward(ones({}), zeros({2, 3}), t)) ==
        std::vector<double>(6, 0.0));
}

TEST_CASE("cross_entropy backward matches finite differences and an f64 reference", "[core]") {
  Generator g(27);
  for (int64_t ignore : {int64_t(-100), int64_t(1)}) {
    Tensor x = randn({6, 5}, kFloat64, &g);
    Tensor t = random_targets(6, 5, ignore, kInt64, g);
    double gl = 0.7;
    auto loss = [&] { return gl * ops::cross_entropy(x, t, ignore).item<double>(); };
    Tensor grad = ops::cross_entropy_backward(full({}, gl, kFloat64), noncontiguous(x), t, ignore);
    INFO("ignore " << ignore << " targets " << ops::to(t, kFloat64));
    expect_close(grad, numeric_grad(loss, x), 1e-6, 1e-8, "cross_entropy_backward fd");
  }
  for (DType dt : kFloats)
    for (int64_t n : {1, 7, 40})
      for (int64_t c : {1, 3, 1000}) {
        Tensor x = ops::to(normal({n, c}, 0, 3, kFloat64, &g), dt);
        Tensor t = random_targets(n, c, -100, kInt32, g);
        Tensor grad = ops::cross_entropy_backward(full({1}, 2.0), x, t);
        CHECK(grad.dtype() == dt);
        auto xv = to_vector(x), tv = to_vector(t);
        int64_t count = 0;
        for (double v : tv) count += v != -100;
        std::vector<double> want(xv.size(), 0.0);
        for (int64_t i = 0; i < n; ++i) {
          if (tv[size_t(i)] == -100) continue;
          std::vector<double> row(xv.begin() + i * c, xv.begin() + (i + 1) * c);
          auto p = ref_softmax(row, c, false);
          for (int64_t j = 0; j < c; ++j)
            want[size_t(i * c + j)] =
                2.0 / double(count) * (p[size_t(j)] - (j == int64_t(tv[size_t(i)])));
        }
        INFO(x.desc());
        expect_close(grad, want, tol(dt) * 4, tol(dt) * 0.01, "cross_entropy_backward");
      }
}

TEST_CASE("cross_entropy rejects bad targets, naming the value", "[core]") {
  Tensor x = zeros({4, 5});
  auto t = [](std::vector<int64_t> v) { return from_vector(v, {int64_t(v.size())}); };
  CHECK_THROWS_WITH(
      ops::cross_entropy(x, t({0, 5, 1, 2})),
      Catch::Contains("cross_entropy: target 5 is out of range [0, 5) for logits [4, 5] f32 cpu"));
  CHECK_THROWS_WITH(ops::cross_entropy(x, t({0, -1, 1, 2})),
                    Catch::Contains("cross_entropy: target -1 is out of range"));
  CHECK_THROWS_WITH(ops::cross_entropy(x, t({0, -100, 1, 2}), 3),
                    Catch::Contains("target -100 is out of range [0, 5)"));
  CHECK_THROWS_WITH(ops::cross_entropy_backward(ones({}), x, t({0, 1, 9, 2})),
                    Catch::Contains("cross_entropy_backward: target 9 is out of range"));
  CHECK_THROWS_WITH(ops::cross_entropy(x, zeros({4})),
                    Catch::Contains("cross_entropy: targets must be i64 or i32, got [4] f32 cpu"));
  CHECK_THROWS_WITH(
      ops::cross_entropy(x, t({0, 1, 2})),
      Catch::Contains("cross_entropy: targets [3] i64 cpu do not match logits [4, 5] f32 cpu"));
  CHECK_THROWS_WITH(ops::cross_entropy(zeros({5}), t({0})),
                    Catch::Contains("cross_entropy: logits must be [N, C], got [5] f32 cpu"));
  CHECK_THROWS_WITH(ops::cross_entropy_backward(ones({2}), x, t({0, 1, 2, 3})),
                    Catch::Contains("cross_entropy_backward: grad_loss must be a one-element"));
}

TEST_CASE("index_select gathers along any dim with any index shape", "[core]") {
  Generator g(28);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64})
    for (const Shape& xs : std::vector<Shape>{{5}, {4, 6}, {3, 5, 7}})
      for (int64_t dim = -int64_t(xs.size()); dim < int64_t(xs.size()); ++dim)
        for (const Shape& is : std::vector<Shape>{{0}, {3}, {2, 2}, {}})
          for (DType idt : {kInt64, kInt32})
            for (int layout = 0; layout < 2; ++layout) {
              int64_t d = dim < 0 ? dim + int64_t(xs.size()) : dim;
              Tensor x = ops::to(ops::to(uniform(xs, -100, 100, kFloat64, &g), kInt64), dt);
              Tensor idx = ops::to(
                  ops::to(uniform(is, 0, double(xs[size_t(d)]), kFloat64, &g), kInt64), idt);
              Tensor out = ops::index_select(layout ? noncontiguous(x) : x, dim, idx);
              INFO(x.desc() << " dim " << dim << " index " << idx.desc() << " layout " << layout);
              auto map = gather_map(xs, d, is, to_vector(idx));
              Shape want_shape(xs.begin(), xs.begin() + d);
              want_shape.insert(want_shape.end(), is.begin(), is.end());
              want_shape.insert(want_shape.end(), xs.begin() + d + 1, xs.end());
              REQUIRE(out.shape() == want_shape);
              CHECK(out.dtype() == dt);
              auto xv = to_vector(x);
              std::vector<double> want;
              for (int64_t m : map) want.push_back(xv[size_t(m)]);
              expect_close(out, want, 0, 0, "index_select");
            }
  Tensor x = zeros({4, 6});
  CHECK_THROWS_WITH(
      ops::index_select(x, 1, from_vector(std::vector<int64_t>{0, 6}, {2})),
      Catch::Contains("index_select: index 6 is out of range [0, 6) for dim 1 of [4, 6] f32 cpu"));
  CHECK_THROWS_WITH(ops::index_select(x, 0, from_vector(std::vector<int64_t>{-1}, {1})),
                    Catch::Contains("index_select: index -1 is out of range [0, 4)"));
  CHECK_THROWS_WITH(ops::index_select(x, 0, zeros({1})),
                    Catch::Contains("index_select: index must be i64 or i32, got [1] f32 cpu"));
  CHECK_THROWS_WITH(ops::index_select(x, 2, zeros({1}, kInt64)),
                    Catch::Contains("index_select: dim 2 is out of range"));
  CHECK_THROWS_WITH(ops::index_select(zeros({}), 0, zeros({1}, kInt64)),
                    Catch::Contains("index_select: cannot index a 0-d tensor"));
}

TEST_CASE("index_add_ accumulates repeated indices in place, in any layout", "[core]") {
  Generator g(29);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64})
    for (const Shape& xs : std::vector<Shape>{{6}, {4, 6}, {3, 5, 7}})
      for (int64_t dim = -int64_t(xs.size()); dim < int64_t(xs.size()); ++dim)
        for (const Shape& is : std::vector<Shape>{{0}, {4}, {2, 3}})
          for (int layout = 0; layout < 2; ++layout) {
            int64_t d = dim < 0 ? dim + int64_t(xs.size()) : dim;
            auto ints = [&](const Shape& s, double lo, double hi) {
              return ops::to(uniform(s, lo, hi, kFloat64, &g), kInt64);
            };
            Tensor x = ops::to(ints(xs, -20, 20), dt);
            Tensor idx = ints(is, 0, double(xs[size_t(d)]));
            Shape ss(xs.begin(), xs.begin() + d);
            ss.insert(ss.end(), is.begin(), is.end());
            ss.insert(ss.end(), xs.begin() + d + 1, xs.end());
            Tensor src = ops::to(ints(ss, -20, 20), dt);
            auto want = to_vector(x);
            auto sv = to_vector(src);
            auto map = gather_map(xs, d, is, to_vector(idx));
            for (size_t i = 0; i < map.size(); ++i) want[size_t(map[i])] += sv[i];
            Tensor target = layout ? noncontiguous(x) : ops::clone(x);
            ops::index_add_(target, dim, idx, src);
            INFO(x.desc() << " dim " << dim << " index " << idx.desc() << " layout " << layout);
            expect_close(target, want, tol(dt) * 4, 0, "index_add_");
          }
  // Many repeats across threads: the same bits as one thread.
  Tensor idx = ops::to(uniform({100000}, 0, 3, kFloat64, &g), kInt64);
  Tensor src = randn({100000, 8}, kFloat32, &g);
  Tensor a = zeros({3, 8});
  ops::index_add_(a, 0, idx, src);
  Tensor b = single_threaded([&] {
    Tensor t = zeros({3, 8});
    ops::index_add_(t, 0, idx, src);
    return t;
  });
  CHECK(same_bits(a, b));

  Tensor x = zeros({4, 6});
  CHECK_THROWS_WITH(
      ops::index_add_(x, 0, from_vector(std::vector<int64_t>{1, 4}, {2}), zeros({2, 6})),
      Catch::Contains("index_add_: index 4 is out of range [0, 4)"));
  CHECK_THROWS_WITH(
      ops::index_add_(x, 0, zeros({2}, kInt64), zeros({3, 6})),
      Catch::Contains("index_add_: source [3, 6] f32 cpu does not match x [4, 6] f32 cpu"));
  CHECK_THROWS_WITH(ops::index_add_(x, 0, zeros({2}, kInt64), zeros({2, 6}, kFloat64)),
                    Catch::Contains("index_add_: source [2, 6] f64 cpu does not match"));
}

TEST_CASE("embedding gathers rows; its backward is the adjoint", "[core]") {
  Generator g(30);
  Tensor w = randn({10, 4}, kFloat64, &g);
  Tensor ids = from_vector(std::vector<int64_t>{3, 3, 0, 9, 1, 3}, {2, 3});
  for (DType idt : {kInt64, kInt32}) {
    Tensor y = ops::embedding(noncontiguous(w), ops::to(ids, idt));
    REQUIRE(y.shape() == Shape{2, 3, 4});
    auto wv = to_vector(w), yv = to_vector(y), iv = to_vector(ids);
    for (size_t i = 0; i < iv.size(); ++i)
      for (size_t j = 0; j < 4; ++j) CHECK(yv[i * 4 + j] == wv[size_t(iv[i]) * 4 + j]);
  }
  CHECK(ops::embedding(w, from_vector(std::vector<int64_t>{7}, {})).shape() == Shape{4});

  // <gy, E(w)> = <E^T(gy), w> for the gather E: backward is exactly the adjoint of forward.
  Tensor gy = randn({2, 3, 4}, kFloat64, &g);
  Tensor gw = ops::embedding_backward(noncontiguous(gy), ids, 10);
  REQUIRE(gw.shape() == Shape{10, 4});
  CHECK(dot(gy, ops::embedding(w, ids)) == Approx(dot(gw, w)).epsilon(1e-12));
  auto gwv = to_vector(gw), gyv = to_vector(gy);
  for (size_t j = 0; j < 4; ++j)  // id 3 appears three times
    CHECK(gwv[3 * 4 + j] == Approx(gyv[0 * 4 + j] + gyv[1 * 4 + j] + gyv[5 * 4 + j]));
  for (DType dt : {kFloat32, kBFloat16, kFloat16}) {
    Tensor gd = ops::embedding_backward(ops::to(gy, dt), ops::to(ids, kInt32), 10);
    CHECK(gd.dtype() == dt);
    expect_close(gd, gw, tol(dt) * 4, tol(dt) * 4, "embedding_backward");
  }

  CHECK_THROWS_WITH(
      ops::embedding(w, from_vector(std::vector<int64_t>{10}, {1})),
      Catch::Contains("embedding: id 10 is out of range [0, 10) for dim 0 of [10, 4] f64 cpu"));
  CHECK_THROWS_WITH(
      ops::embedding(zeros({10}), ids),
      Catch::Contains("embedding: weight must be [num_embeddings, dim], got [10] f32 cpu"));
  CHECK_THROWS_WITH(
      ops::embedding_backward(zeros({2, 4}), ids, 10),
      Catch::Contains(
          "embedding_backward: grad_y [2, 4] f32 cpu does not match ids [2, 3] i64 cpu"));
  CHECK_THROWS_WITH(ops::embedding_backward(zeros({2, 3, 4}), ids, 5),
                    Catch::Contains("embedding_backward: id 9 is out of range [0, 5)"));
}
