#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("dtype conversions round to nearest even", "[core]") {
  CHECK(float(bf16(1.0f)) == 1.0f);
  CHECK(float(bf16(1.00390625f)) == 1.0f);        // halfway: ties to even (down)
  CHECK(float(bf16(1.01171875f)) == 1.015625f);   // halfway: ties to even (up)
  CHECK(std::isnan(float(bf16(std::nanf("")))));
  CHECK(float(f16(1.0f)) == 1.0f);
  CHECK(float(f16(65504.0f)) == 65504.0f);
  CHECK(std::isinf(float(f16(65520.0f))));
  CHECK(float(f16(5.9604645e-8f)) == 5.9604645e-8f);  // smallest subnormal
  CHECK(float(f16(-2.5f)) == -2.5f);
  CHECK(float(f16(0.1f)) == Approx(0.0999755859375f));
  // Every f16 bit pattern that is a number survives a round trip through float.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    f16 h;
    h.bits = uint16_t(b);
    float f = float(h);
    if (std::isnan(f)) continue;
    REQUIRE(f16(f).bits == h.bits);
  }
  CHECK(promote(DType::bf16, DType::f16) == DType::f32);
  CHECK(promote(DType::i64, DType::f16) == DType::f16);
  CHECK_THROWS_WITH(parse_dtype("f8"), Catch::Contains("unknown dtype 'f8'"));
}

TEST_CASE("factories, views share storage, contiguous copies", "[core]") {
  Tensor a = arange(0, 24, 1, kFloat32);
  Tensor v = ops::view(a, {2, 3, 4});
  CHECK(v.shape() == Shape{2, 3, 4});
  CHECK(v.strides() == Shape{12, 4, 1});
  CHECK(v.impl().storage == a.impl().storage);

  Tensor t = ops::transpose(v, 0, 2);  // [4, 3, 2]
  CHECK(!t.is_contiguous());
  CHECK(t.strides() == Shape{1, 4, 12});
  Tensor c = ops::contiguous(t);
  CHECK(c.is_contiguous());
  auto cv = to_vector(c);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 2; ++k) CHECK(cv[i * 6 + j * 2 + k] == double(k * 12 + j * 4 + i));

  Tensor n = ops::narrow(v, 1, 1, 2);  // rows 1..2 of each matrix
  CHECK(n.shape() == Shape{2, 2, 4});
  CHECK(n.offset() == 4);
  CHECK(to_vector(n)[0] == 4.0);
  CHECK(to_vector(ops::select(v, 0, 1))[0] == 12.0);

  // Writing through a view is seen by the base.
  ops::fill_(ops::narrow(a, 0, 0, 2), -1);
  CHECK(to_vector(v)[1] == -1.0);

  Tensor e = ops::expand(from_vector(std::vector<double>{1, 2, 3}, {3}), {2, 3});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(to_vector(e) == std::vector<double>{1, 2, 3, 1, 2, 3});
  CHECK(zeros({0, 3}).numel() == 0);
  CHECK(to_vector(full({2}, 7.5, kBFloat16)) == std::vector<double>{7.5, 7.5});
  CHECK(to_vector(arange(5)) == std::vector<double>{0, 1, 2, 3, 4});
}

TEST_CASE("view refuses incompatible strides, reshape copies", "[core]") {
  Tensor t = ops::transpose(ops::view(arange(0, 6, 1, kFloat32), {2, 3}), 0, 1);  // [3, 2]
  CHECK_THROWS_WITH(ops::view(t, {6}), Catch::Contains("use reshape"));
  Tensor r = ops::reshape(t, {6});
  CHECK(to_vector(r) == std::vector<double>{0, 3, 1, 4, 2, 5});
  // Merging dims that are contiguous with each other stays a view.
  Tensor x = zeros({4, 6, 5});
  Tensor p = ops::narrow(x, 2, 0, 3);  // [4, 6, 3] strides [30, 5, 1]
  Tensor q = ops::view(ops::narrow(x, 0, 1, 2), {12, 5});
  CHECK(q.impl().storage == x.impl().storage);
  CHECK(ops::view(p, {24, 3}).strides() == Shape{5, 1});  // dims 0, 1 still merge
  CHECK_THROWS(ops::view(p, {4, 18}));
  CHECK(ops::view(zeros({2, 3}), {-1}).shape() == Shape{6});
  CHECK_THROWS_WITH(ops::view(zeros({2, 3}), {4, -1}), Catch::Contains("cannot reshape"));
}

TEST_CASE("cat, split, casts", "[core]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector(std::vector<double>{5, 6}, {2, 1});
  Tensor c = ops::cat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 3});
  CHECK(to_vector(c) == std::vector<double>{1, 2, 5, 3, 4, 6});
  auto parts = ops::split(c, 2, 1);
  REQUIRE(parts.size() == 2);
  CHECK(parts[1].shape() == Shape{2, 1});
  CHECK_THROWS_WITH(ops::cat({a, zeros({3, 1})}, 1), Catch::Contains("does not match"));

  Tensor h = ops::to(from_vector(std::vector<double>{1.5, -2.25, 1e6}, {3}), kFloat16);
  CHECK(h.dtype() == kFloat16);
  CHECK(to_vector(h) == std::vector<double>{1.5, -2.25, std::numeric_limits<double>::infinity()});
  CHECK(to_vector(ops::to(from_vector(std::vector<double>{2.7, -1.2}, {2}), kInt64)) ==
        std::vector<double>{2, -1});
}

TEST_CASE("Philox streams are reproducible and resumable", "[core]") {
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, kFloat32, &g1);
  Tensor b = randn({1000}, kFloat32, &g2);
  CHECK(to_vector(a) == to_vector(b));
  // Saving the state and restoring it replays the same numbers.
  PhiloxState s = g1.state();
  Tensor c = rand({37}, kFloat32, &g1);
  g1.set_state(s);
  CHECK(to_vector(rand({37}, kFloat32, &g1)) == to_vector(c));
  // Different streams differ.
  Generator g3(42, 1);
  CHECK(to_vector(randn({8}, kFloat32, &g3)) != to_vector(ops::narrow(a, 0, 0, 8)));
  // Moments of 100k normals.
  auto v = to_vector(randn({100000}, kFloat32, &g1));
  double m = 0, sq = 0;
  for (double x : v) { m += x; sq += x * x; }
  m /= v.size();
  CHECK(std::fabs(m) < 0.02);
  CHECK(std::fabs(sq / v.size() - 1) < 0.02);
  auto u = to_vector(uniform({10000}, -2, 3, kFloat64, &g1));
  for (double x : u) REQUIRE((x >= -2 && x < 3));
}

TEST_CASE("printing shows values, shape, dtype and device", "[core]") {
  Tensor t = from_vector(std::vector<double>{1, 2.5, -3, 4}, {2, 2});
  std::string s = t.str();
  CHECK(s.find("[[1.0000, 2.5000],") != std::string::npos);
  CHECK(s.find("dtype=f32") != std::string::npos);
  CHECK(s.find("device=cpu") != std::string::npos);
  CHECK(arange(5000, kFloat32).str().find("...") != std::string::npos);
}

TEST_CASE("bad input names the op and the tensors", "[core]") {
  CHECK_THROWS_WITH(ops::transpose(zeros({2, 3}), 0, 5), Catch::Contains("transpose: dim 5"));
  CHECK_THROWS_WITH(ops::narrow(zeros({2, 3}), 1, 2, 2), Catch::Contains("narrow"));
  CHECK_THROWS_WITH(ops::expand(zeros({2, 3}), {4, 3}), Catch::Contains("cannot expand"));
  CHECK_THROWS_WITH(Device::parse("gpu"), Catch::Contains("unknown device 'gpu'"));
  CHECK_THROWS_WITH(zeros({2}).data<double>(), Catch::Contains("data<f64>"));
  CHECK_THROWS_WITH(zeros({2}).item<float>(), Catch::Contains("one-element"));
  if (!cuda_available()) {
    CHECK_THROWS_WITH(zeros({2}, Device::cuda(0)), Catch::Contains("CUDA"));
  }
}
