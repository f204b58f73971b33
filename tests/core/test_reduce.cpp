#include <cstring>
#include <limits>

#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Shape keep_dims(const Shape& shape, const Shape& dims);

// For each element of a row-major `shape`, its flat index in `small` (same rank, dims of size 1
// where reduced), walked with an odometer: the references run over large inputs.
std::vector<size_t> out_index_map(const Shape& shape, const Shape& small) {
  std::vector<size_t> map(size_t(numel_of(shape)));
  Shape st = contiguous_strides(small);
  std::vector<int64_t> idx(shape.size(), 0);
  size_t o = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    map[i] = o;
    for (size_t d = shape.size(); d-- > 0;) {
      if (small[d] != 1) o += size_t(st[d]);
      if (++idx[d] < shape[d]) break;
      if (small[d] != 1) o -= size_t(st[d] * shape[d]);
      idx[d] = 0;
    }
  }
  return map;
}

// Naive f64 reduction of row-major values of `shape` over `dims` (empty = all); keepdim shape.
std::vector<double> ref_reduce(ReduceOp op, const std::vector<double>& v, const Shape& shape,
                               const Shape& dims) {
  Shape out_shape = keep_dims(shape, dims);
  int64_t n_out = numel_of(out_shape), r = n_out ? int64_t(v.size()) / n_out : 0;
  double init = op == ReduceOp::max ? -kInf : op == ReduceOp::min ? kInf : 0;
  std::vector<double> out(size_t(n_out), init);
  auto map = out_index_map(shape, out_shape);
  for (size_t i = 0; i < v.size(); ++i) {
    size_t o = map[i];
    double x = v[i];
    if (op == ReduceOp::sum || op == ReduceOp::mean)
      out[o] += x;
    else if (std::isnan(x) || std::isnan(out[o]))
      out[o] = kNaN;
    else
      out[o] = op == ReduceOp::max ? std::max(out[o], x) : std::min(out[o], x);
  }
  if (op == ReduceOp::mean)
    for (double& x : out) x = r ? x / double(r) : kNaN;
  return out;
}

std::vector<bool> reduced_dims(const Shape& shape, const Shape& dims) {
  std::vector<bool> red(shape.size(), dims.empty());
  for (int64_t d : dims)
    if (!shape.empty()) red[size_t(d < 0 ? d + int64_t(shape.size()) : d)] = true;
  return red;
}

Shape keep_dims(const Shape& shape, const Shape& dims) {
  auto red = reduced_dims(shape, dims);
  Shape s = shape;
  for (size_t d = 0; d < shape.size(); ++d)
    if (red[d]) s[d] = 1;
  return s;
}

Shape squeeze_dims(const Shape& shape, const Shape& dims) {
  auto red = reduced_dims(shape, dims);
  Shape s;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!red[d]) s.push_back(shape[d]);
  return s;
}

// The same values as x in a dense but transposed layout (all dims reversed in memory).
Tensor reversed_layout(const Tensor& x) {
  Shape rev;
  for (int64_t d = x.dim() - 1; d >= 0; --d) rev.push_back(d);
  return ops::permute(ops::contiguous(ops::permute(x, rev)), rev);
}

Tensor layout_of(const Tensor& x, int layout) {
  if (layout == 1) return noncontiguous(x);
  if (layout == 2) return reversed_layout(x);
  return x;
}

struct Case {
  Shape shape;
  std::vector<Shape> dims;
};

const std::vector<Case> kCases = {
    {{}, {{}, {0}, {-1}}},
    {{1}, {{}, {0}}},
    {{7}, {{}, {0}, {-1}}},
    {{3, 5}, {{}, {0}, {1}, {-1, 0}}},
    {{2, 3, 33}, {{}, {0}, {1}, {2}, {0, 2}, {-1, -2}, {0, 1}}},
    {{4, 1, 9}, {{1}, {0, 1}, {0, 2}}},
    {{2, 3, 4, 5}, {{1, 3}, {0, 2}, {2}, {0, 1, 3}}},
    {{5, 70000}, {{}, {0}, {1}}},
};

}  // namespace

TEST_CASE("sum, mean, amax, amin match an f64 reference in every dtype and layout", "[core]") {
  Generator g(11);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64, kInt32})
    for (const Case& c : kCases)
      for (const Shape& dims : c.dims)
        for (int layout = 0; layout < 3; ++layout)
          for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min})
            for (bool keepdim : {false, true}) {
              bool is_int = !is_floating(dt);
              if (is_int && op == ReduceOp::mean) continue;
              // The long case runs in fewer combinations: the reference is slow.
              if (numel_of(c.shape) > 100000 &&
                  (layout == 2 || keepdim || dt == kFloat64 || dt == kInt64 || dt == kFloat16))
                continue;
              Tensor x = is_int ? ops::to(uniform(c.shape, -50, 50, kFloat64, &g), dt)
                                : ops::to(randn(c.shape, kFloat64, &g), dt);
              Tensor out = ops::reduce(op, layout_of(x, layout), dims, keepdim);
              Shape want_shape = keepdim ? keep_dims(c.shape, dims) : squeeze_dims(c.shape, dims);
              INFO(int(op) << " " << x.desc() << " dims " << shape_str(dims) << " keepdim "
                           << keepdim << " layout " << layout);
              REQUIRE(out.shape() == want_shape);
              DType want_dt = op == ReduceOp::sum && is_int ? kInt64 : dt;
              CHECK(out.dtype() == want_dt);
              auto want = ref_reduce(op, to_vector(x), c.shape, dims);
              int64_t r = numel_of(c.shape) / std::max<int64_t>(numel_of(want_shape), 1);
              if (numel_of(want_shape) == 0) r = 0;
              bool exact = is_int || op == ReduceOp::max || op == ReduceOp::min;
              // Sums round once on output; the atol covers cancellation towards 0 in a long sum.
              double rt = exact ? 0 : tol(dt) * 4;
              double at = exact ? 0 : tol(dt) * std::sqrt(double(r) + 1);
              expect_close(out, want, rt, at, "reduce");
            }
}

TEST_CASE("reductions over empty dims and of empty tensors", "[core]") {
  Tensor e = zeros({2, 0, 3});
  CHECK(ops::sum(e).item<double>() == 0);
  CHECK(std::isnan(ops::mean(e).item<double>()));
  Tensor s = ops::sum(e, {1});
  REQUIRE(s.shape() == Shape{2, 3});
  CHECK(to_vector(s) == std::vector<double>(6, 0.0));
  Tensor m = ops::mean(e, {1}, true);
  REQUIRE(m.shape() == Shape{2, 1, 3});
  for (double v : to_vector(m)) CHECK(std::isnan(v));
  // Reducing a non-empty dim of an empty tensor is an empty result, even for max.
  CHECK(ops::amax(e, {0}).shape() == Shape{0, 3});
  CHECK(ops::argmax(e, 2).shape() == Shape{2, 0});
  CHECK(ops::sum(zeros({0}, kInt32)).dtype() == kInt64);
  CHECK(ops::sum(zeros({3}, kBool)).dtype() == kInt64);
  Tensor b = ops::binary(BinaryOp::gt, from_vector(std::vector<double>{1, -1, 2, 3}, {4}), 0.0);
  CHECK(ops::sum(b).item<int64_t>() == 3);
}

TEST_CASE("reduction errors name the op and the tensor", "[core]") {
  CHECK_THROWS_WITH(ops::mean(zeros({3}, kInt64)),
                    Catch::Contains("mean: expected a floating-point tensor, got [3] i64 cpu"));
  CHECK_THROWS_WITH(ops::amax(zeros({2, 0})),
                    Catch::Contains("amax: cannot reduce [2, 0] f32 cpu"));
  CHECK_THROWS_WITH(ops::amin(zeros({2, 0}), {1}), Catch::Contains("amin: cannot reduce"));
  CHECK_THROWS_WITH(ops::argmax(zeros({2, 0}), 1), Catch::Contains("argmax: dim 1 of [2, 0]"));
  CHECK_THROWS_WITH(ops::sum(zeros({2, 3}), {1, -1}), Catch::Contains("sum: dim -1 repeats"));
  CHECK_THROWS_WITH(ops::sum(zeros({2, 3}), {2}), Catch::Contains("sum: dim 2 is out of range"));
  CHECK_THROWS_WITH(ops::argmax(zeros({2, 3}), -3),
                    Catch::Contains("argmax: dim -3 is out of range"));
}

TEST_CASE("max and min propagate NaN; argmax takes the first maximum, NaN first", "[core]") {
  Tensor x = from_vector(std::vector<double>{1, kNaN, 3, -kInf, -kInf, -kInf, 2, 5, 5}, {3, 3});
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16}) {
    Tensor xd = ops::to(x, dt);
    auto mx = to_vector(ops::amax(xd, {1}));
    CHECK(std::isnan(mx[0]));
    CHECK(mx[1] == -kInf);
    CHECK(mx[2] == 5);
    CHECK(std::isnan(to_vector(ops::amin(xd, {1}))[0]));
    CHECK(to_vector(ops::argmax(xd, 1)) == std::vector<double>{1, 0, 1});
    CHECK(to_vector(ops::argmax(xd, 0)) == std::vector<double>{2, 0, 2});
  }
  // Ties resolve to the first index however the work is split: a long row of equal values.
  Tensor flat = ones({300000});
  CHECK(ops::argmax(flat, 0).item<int64_t>() == 0);
  Tensor col = ones({100000, 3});
  CHECK(to_vector(ops::argmax(col, 0)) == std::vector<double>{0, 0, 0});
}

TEST_CASE("argmax matches a reference in every dtype and layout", "[core]") {
  Generator g(12);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64})
    for (const Shape& s :
         std::vector<Shape>{{}, {1}, {9}, {3, 5}, {2, 3, 33}, {4, 1, 9}, {3, 40000}})
      for (int64_t dim = -int64_t(std::max<size_t>(s.size(), 1));
           dim < int64_t(std::max<size_t>(s.size(), 1)); ++dim)
        for (int layout = 0; layout < 3; ++layout)
          for (bool keepdim : {false, true}) {
            if (numel_of(s) > 100000 && (layout > 0 || keepdim)) continue;  // time
            // Few distinct values, so ties happen.
            Tensor x = ops::to(ops::to(uniform(s, -4, 4, kFloat64, &g), kInt64), dt);
            Tensor out = ops::argmax(layout_of(x, layout), dim, keepdim);
            CHECK(out.dtype() == kInt64);
            int64_t d = s.empty() ? 0 : (dim < 0 ? dim + int64_t(s.size()) : dim);
            Shape ks = s;
            if (!s.empty()) ks[size_t(d)] = 1;
            auto v = to_vector(x);
            std::vector<double> want(size_t(numel_of(ks)), -1), best(size_t(numel_of(ks)), -kInf);
            auto map = out_index_map(s, ks);
            int64_t inner = s.empty() ? 1 : numel_of(Shape(s.begin() + d + 1, s.end()));
            for (int64_t i = 0; i < int64_t(v.size()); ++i) {
              size_t o = map[size_t(i)];
              int64_t k = s.empty() ? 0 : (i / inner) % s[size_t(d)];
              if (want[o] < 0 || v[size_t(i)] > best[o])
                want[o] = double(k), best[o] = v[size_t(i)];
            }
            INFO(x.desc() << " dim " << dim << " layout " << layout);
            REQUIRE(out.numel() == int64_t(want.size()));
            CHECK(to_vector(out) == want);
            if (keepdim) CHECK(out.shape() == ks);
          }
}

TEST_CASE("long f32 sums are accurate and do not depend on the thread count", "[core]") {
  Generator g(13);
  Tensor x = normal({3000017}, 1.0, 2.0, kFloat32, &g);
  Tensor m = normal({1000, 1237}, 0.0, 1.0, kFloat32, &g);
  double want = 0;
  for (double v : to_vector(x)) want += v;
  auto run = [&] {
    return std::vector<Tensor>{ops::sum(x), ops::sum(m, {0}), ops::sum(m, {1}), ops::mean(x)};
  };
  auto a = run();
  CHECK(a[0].item<double>() == Approx(want).epsilon(1e-6));
  int before = get_num_threads();
  set_num_threads(1);
  auto b = run();
  set_num_threads(before);
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].nbytes() == b[i].nbytes());
    CHECK(std::memcmp(a[i].data_ptr(), b[i].data_ptr(), a[i].nbytes()) == 0);
  }
}

TEST_CASE("sum_squares: one pass over many tensors matches an f64 reference", "[core]") {
  Generator g(17);
  std::vector<Tensor> xs;
  double want = 0;
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16})
    for (const Shape& s : {Shape{7}, Shape{1000003}, Shape{33, 65}, Shape{0, 4}}) {
      Tensor x = normal(s, 0.5, 1.5, dt, &g);
      for (double v : to_vector(x)) want += v * v;
      xs.push_back(xs.size() % 3 == 1 ? noncontiguous(x) : x);
    }
  xs.push_back(Tensor());  // undefined tensors (parameters without a gradient) are skipped
  CHECK(ops::sum_squares(xs) == Approx(want).epsilon(1e-6));
  CHECK(ops::sum_squares({}) == 0.0);
  // An inf or NaN anywhere makes the result non-finite: the loss scaler's overflow check.
  Tensor bad = zeros({100000});
  ops::fill_(ops::narrow(bad, 0, 77777, 1), kInf);
  CHECK(std::isinf(ops::sum_squares({xs[0], bad})));
  ops::fill_(ops::narrow(bad, 0, 5, 1), kNaN);
  CHECK(std::isnan(ops::sum_squares({bad, xs[1]})));
  CHECK_THROWS_WITH(ops::sum_squares({from_vector(std::vector<int64_t>{1, 2}, {2})}),
                    Catch::Contains("sum_squares") && Catch::Contains("floating-point"));
}

TEST_CASE("sum_to reduces broadcast dims back to the target shape", "[core]") {
  Generator g(14);
  struct ST {
    Shape x, target;
  };
  std::vector<ST> cases = {{{2, 3, 4}, {3, 4}},
                           {{2, 3, 4}, {1, 4}},
                           {{2, 3, 4}, {3, 1}},
                           {{2, 3, 4}, {2, 1, 4}},
                           {{2, 3, 4}, {}},
                           {{2, 3, 4}, {1}},
                           {{2, 3, 4}, {2, 3, 4}},
                           {{5, 1, 7}, {1, 7}},
                           {{0, 3}, {3}},
                           {{4, 0}, {1, 0}},
                           {{}, {}}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16})
    for (const auto& c : cases)
      for (int layout = 0; layout < 2; ++layout) {
        Tensor x = ops::to(randn(c.x, kFloat64, &g), dt);
        Tensor out = ops::sum_to(layout ? noncontiguous(x) : x, c.target);
        INFO(x.desc() << " -> " << shape_str(c.target) << " layout " << layout);
        REQUIRE(out.shape() == c.target);
        CHECK(out.dtype() == dt);
        auto v = to_vector(x);
        std::vector<double> want(size_t(numel_of(c.target)), 0.0);
        for (int64_t i = 0; i < int64_t(v.size()); ++i)
          want[size_t(broadcast_index(unravel(i, c.x), c.target))] += v[size_t(i)];
        expect_close(out, want, tol(dt) * 4, tol(dt) * 4, "sum_to");
      }
  // The gradient of an expand: a broadcast (stride 0) input sums back exactly.
  Tensor v = randn({3, 1, 4}, kFloat64, &g);
  Tensor back = ops::sum_to(ops::expand(v, {2, 3, 5, 4}), {3, 1, 4});
  expect_close(back, ops::binary(BinaryOp::mul, v, 10.0), 1e-12, 1e-12, "sum_to of expand");
  CHECK_THROWS_WITH(ops::sum_to(zeros({2, 3}), {4}),
                    Catch::Contains("sum_to: cannot sum [2, 3] f32 cpu down to [4]"));
  CHECK_THROWS_WITH(ops::sum_to(zeros({3}), {2, 3}), Catch::Contains("sum_to: cannot sum"));
}
