// Basic indexing (Slice, integers, Ellipsis, None) against a naive reference on row-major
// values, views sharing storage, and the in-place methods copy_/fill_/zero_/index_put_.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;
using namespace fathom::indexing;

namespace {

// Python's slice.indices() for step > 0, written out independently of the implementation.
std::vector<int64_t> py_range(std::optional<int64_t> start, std::optional<int64_t> stop,
                              int64_t step, int64_t n) {
  auto fix = [n](std::optional<int64_t> b, int64_t dflt) {
    if (!b) return dflt;
    int64_t v = *b < 0 ? *b + n : *b;
    return v < 0 ? int64_t(0) : v > n ? n : v;
  };
  std::vector<int64_t> r;
  for (int64_t i = fix(start, 0); i < fix(stop, n); i += step) r.push_back(i);
  return r;
}

}  // namespace

TEST_CASE("index: slices clamp and count from the end like Python", "[core]") {
  Tensor x = arange(0, 10, 1, kFloat64);
  const std::optional<int64_t> bounds[] = {std::nullopt, 0, 3, -3, -20, 20, 10, 9};
  for (auto lo : bounds)
    for (auto hi : bounds)
      for (int64_t step : {1, 2, 3, 11}) {
        Tensor v = x.index({Slice(lo, hi, step)});
        std::vector<double> want;
        for (int64_t i : py_range(lo, hi, step, 10)) want.push_back(double(i));
        INFO("slice " << Slice(lo, hi, step).str());
        CHECK(to_vector(v) == want);
      }
}

TEST_CASE("index: integers, Ellipsis and None make the same view as select/unsqueeze", "[core]") {
  Generator g(21);
  Tensor x = randn({4, 5, 6}, kFloat64, &g);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor b = nc ? noncontiguous(x) : x;
    INFO("noncontiguous " << nc);
    // x[1:3, -1, ::2]
    Tensor v = b.index({Slice(1, 3), -1, Slice(None, None, 2)});
    REQUIRE(v.shape() == Shape{2, 3});
    std::vector<double> want;
    for (int64_t i = 1; i < 3; ++i)
      for (int64_t k = 0; k < 6; k += 2) want.push_back(to_vector(x)[i * 30 + 4 * 6 + k]);
    CHECK(to_vector(v) == want);
    // Ellipsis fills the middle; None adds axes anywhere.
    CHECK(to_vector(b.index({Ellipsis, 2})) == to_vector(ops::select(x, 2, 2)));
    CHECK(b.index({Ellipsis, 2}).shape() == Shape{4, 5});
    CHECK(b.index({0, Ellipsis}).shape() == Shape{5, 6});
    CHECK(b.index({None, 1, Ellipsis, None}).shape() == Shape{1, 5, 6, 1});
    CHECK(to_vector(b.index({None, 1, Ellipsis, None})) == to_vector(ops::select(x, 0, 1)));
    CHECK(b.index({Slice(), None, 3}).shape() == Shape{4, 1, 6});
    CHECK(b.index({Ellipsis}).shape() == x.shape());
    CHECK(b.index({}).shape() == x.shape());
    CHECK(b.index({1, 2, 3}).dim() == 0);
    CHECK(b.index({1, 2, 3}).item<double>() == to_vector(x)[1 * 30 + 2 * 6 + 3]);
    CHECK(b.index({Slice(2, 2)}).shape() == Shape{0, 5, 6});
    CHECK(b.index({Slice(5, None)}).shape() == Shape{0, 5, 6});
    CHECK(b.index({Slice(1, None, INT64_MAX)}).shape() == Shape{1, 5, 6});
    CHECK(b.index({Slice(INT64_MIN, INT64_MAX)}).shape() == x.shape());
  }
}

TEST_CASE("index: the result is a view; index_put_ writes through it", "[core]") {
  Tensor x = zeros({3, 4});
  Tensor v = x.index({Slice(None, None, 2), Slice(1, 3)});
  CHECK(v.impl().storage == x.impl().storage);
  v.fill_(1);
  CHECK(to_vector(x) == std::vector<double>{0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0});
  x.index_put_({1}, 5.0);
  x.index_put_({Slice(), -1}, from_vector(std::vector<double>{7, 8, 9}, {3}));
  CHECK(to_vector(x) == std::vector<double>{0, 1, 1, 7, 5, 5, 5, 8, 0, 1, 1, 9});
  // value broadcasts to the view, and converts dtype.
  x.index_put_({Slice(0, 2), Slice(0, 2)}, from_vector(std::vector<int64_t>{-1, -2}, {2}));
  CHECK(to_vector(x.index({Slice(0, 2), Slice(0, 2)})) == std::vector<double>{-1, -2, -1, -2});
  CHECK_THROWS_WITH(x.index_put_({0}, zeros({3})), Catch::Contains("copy_: shapes [3] and [4]"));
}

TEST_CASE("index: bad indices name the dim and the bound", "[core]") {
  Tensor x = zeros({4, 5});
  CHECK_THROWS_WITH(x.index({Slice(), 5}),
                    Catch::Contains("index: index 5 is out of range for dim 1 of size 5"));
  CHECK_THROWS_WITH(x.index({-5}), Catch::Contains("index -5 is out of range for dim 0 of size 4"));
  CHECK_THROWS_WITH(x.index({Slice(), Slice(0, 4, 0)}),
                    Catch::Contains("slice 0:4:0 at dim 1 has step 0"));
  CHECK_THROWS_WITH(x.index({Slice(None, None, -1)}),
                    Catch::Contains("slice ::-1 at dim 0 has step -1; the step must be >= 1"));
  CHECK_THROWS_WITH(x.index({0, 0, 0}), Catch::Contains("too many indices [0, 0, 0]"));
  CHECK_THROWS_WITH(x.index({Ellipsis, 0, Ellipsis}), Catch::Contains("at most one Ellipsis"));
}

TEST_CASE("copy_, fill_, zero_: broadcast, convert dtype, write through views", "[core]") {
  Tensor x = zeros({2, 3}, kFloat64);
  x.copy_(from_vector(std::vector<double>{1.5, 2.5, 3.5}, {3}, kFloat32));  // broadcast + cast
  CHECK(to_vector(x) == std::vector<double>{1.5, 2.5, 3.5, 1.5, 2.5, 3.5});
  Tensor i = zeros({2, 3}, kInt32);
  i.copy_(x);  // float -> int truncates toward zero, as PyTorch
  CHECK(to_vector(i) == std::vector<double>{1, 2, 3, 1, 2, 3});
  x.t().copy_(from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}));  // non-contiguous dst
  CHECK(to_vector(x) == std::vector<double>{1, 3, 5, 2, 4, 6});
  CHECK(&x.fill_(-2) == &x);
  CHECK(to_vector(x) == std::vector<double>(6, -2));
  x.index({Slice(), 1}).zero_();
  CHECK(to_vector(x) == std::vector<double>{-2, 0, -2, -2, 0, -2});
  Tensor b = zeros({3}, kBFloat16);
  b.fill_(1.0 / 3);  // rounded once to bf16
  CHECK(to_vector(b)[0] == double(float(bf16(1.0f / 3))));
  CHECK_THROWS_WITH(x.copy_(zeros({4})), Catch::Contains("copy_: shapes [4] and [2, 3] do not broadcast"));
  CHECK_THROWS_WITH(x.copy_(zeros({2, 2, 3})),
                    Catch::Contains("copy_: src [2, 2, 3] f32 cpu does not broadcast to dst [2, 3] f64"));
}

TEST_CASE("to(device, dtype) and to(options) convert once; clone copies", "[core]") {
  Tensor x = from_vector(std::vector<double>{1.25, -2.5}, {2}, kFloat64);
  Tensor y = x.to(kCPU, kFloat32);
  CHECK(y.dtype() == kFloat32);
  CHECK(to_vector(y) == to_vector(x));
  CHECK(x.to(TensorOptions(kFloat64)).is_same(x));  // nothing to do: the same tensor
  CHECK(x.to({kBFloat16, kCPU}).dtype() == kBFloat16);
  Tensor c = x.clone();
  CHECK(c.impl().storage != x.impl().storage);
  CHECK(c.is_contiguous());
  c.fill_(0);
  CHECK(to_vector(x) == std::vector<double>{1.25, -2.5});
  Tensor nc = noncontiguous(randn({3, 4}, kFloat32));
  Tensor cc = nc.clone();
  CHECK((cc.is_contiguous() && to_vector(cc) == to_vector(nc)));
}
