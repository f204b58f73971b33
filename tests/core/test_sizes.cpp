// Size arithmetic on hostile shapes: every product is checked (core/checked.h), so a shape whose
// element or byte count does not fit in int64 is an Error naming the op before any allocation,
// instead of a wrapped, small size (2^22 x 2^21 x 2^21 bytes wraps to 0) or signed overflow.
#include "testing.h"

#include <climits>

using namespace fathom;
using Catch::Contains;

namespace {
constexpr int64_t P(int bits) { return int64_t(1) << bits; }
}  // namespace

TEST_CASE("checked helpers report overflow exactly", "[core]") {
  int64_t r = 0;
  CHECK(mul_fits(P(31), P(31), &r));
  CHECK(r == P(62));
  CHECK_FALSE(mul_fits(P(32), P(31), &r));  // 2^63 is one past INT64_MAX
  CHECK(add_fits(INT64_MAX - 1, int64_t(1), &r));
  CHECK_FALSE(add_fits(INT64_MAX, int64_t(1), &r));
  CHECK(checked_numel({}, "op") == 1);
  CHECK(checked_numel({3, 0, 5}, "op") == 0);
  CHECK(checked_nbytes({3, 5}, 8, "op") == 120);
}

TEST_CASE("numel_of and contiguous_strides refuse shapes that overflow", "[core]") {
  CHECK(numel_of({2, 3, 4}) == 24);
  CHECK(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
  CHECK(contiguous_strides({2, 0, 4}) == Shape{4, 4, 1});  // zero dims stride as size 1
  // The IDX shape: 2^64 elements, which a plain product wraps to 0.
  Shape idx{P(22), P(21), P(21)};
  CHECK_THROWS_WITH(numel_of(idx), Contains("numel") && Contains("[4194304, 2097152, 2097152]") &&
                                       Contains("overflows int64"));
  CHECK_THROWS_WITH(contiguous_strides(idx), Contains("contiguous_strides") && Contains("overflows"));
  // A zero dim makes the count 0, but the strides still multiply the other dims.
  CHECK_THROWS_WITH(numel_of({0, P(40), P(40)}), Contains("overflows int64"));
  CHECK(numel_of({0, P(30), P(30)}) == 0);
  CHECK_THROWS_WITH(numel_of({2, -3}), Contains("negative dimension in shape [2, -3]"));
}

TEST_CASE("factories refuse huge and negative shapes before allocating", "[core]") {
  // Element count overflows.
  CHECK_THROWS_WITH(empty({P(22), P(21), P(21)}, DType::u8),
                    Contains("empty: shape [4194304, 2097152, 2097152] is too large") &&
                        Contains("element count overflows int64"));
  CHECK_THROWS_WITH(zeros({P(32), P(32)}), Contains("empty") && Contains("overflows int64"));
  // The count fits but the bytes do not: 2^62 f32 elements are 2^64 bytes.
  CHECK_THROWS_WITH(empty({P(62)}, DType::f32),
                    Contains("empty") && Contains("4611686018427387904 elements of 4 bytes"));
  CHECK_THROWS_WITH(ones({P(61), 2}, DType::f64), Contains("overflow int64"));
  CHECK_THROWS_WITH(rand({P(40), P(40)}), Contains("empty") && Contains("overflows"));
  // Negative dims name the shape.
  CHECK_THROWS_WITH(empty({4, -1}), Contains("empty: negative dimension in shape [4, -1]"));
  CHECK_THROWS_WITH(zeros({-5}), Contains("negative dimension in shape [-5]"));
  CHECK_THROWS_WITH(full({3, INT64_MIN}, 1.0), Contains("negative dimension"));
  // Zero-size tensors with large (but representable) other dims are fine and hold no bytes.
  Tensor z = empty({0, P(40)});
  CHECK(z.numel() == 0);
  CHECK(z.nbytes() == 0);
  CHECK(z.strides() == Shape{P(40), 1});
}

TEST_CASE("arange refuses non-finite bounds and counts too large to store", "[core]") {
  CHECK(to_vector(arange(0, 5, 2)) == std::vector<double>{0, 2, 4});
  CHECK(arange(5, 0, 1).numel() == 0);
  CHECK_THROWS_WITH(arange(0, INFINITY, 1), Contains("arange") && Contains("finite"));
  CHECK_THROWS_WITH(arange(0, 1, NAN), Contains("finite"));
  CHECK_THROWS_WITH(arange(0, 1e300, 1), Contains("arange") && Contains("too many"));
  // 2^61 i64 elements are 2^64 bytes: refused by empty() before a vector of them is made.
  CHECK_THROWS_WITH(arange(0, 0x1p61, 1), Contains("empty") && Contains("overflow int64"));
}

TEST_CASE("reshape, view and expand check element counts without wrapping", "[core]") {
  Tensor none = empty({0});
  Tensor four = zeros({4});
  // 2^32 x 2^32 x 4 wraps to 0, which would "match" an empty tensor.
  CHECK_THROWS_WITH(ops::reshape(none, {P(32), P(32), 4}),
                    Contains("reshape") && Contains("overflows int64"));
  CHECK_THROWS_WITH(ops::view(none, {P(32), P(32), 4}), Contains("view") && Contains("overflows"));
  // With a -1, the known dims' product wraps to 0 unchecked.
  CHECK_THROWS_WITH(ops::reshape(four, {-1, P(32), P(32)}), Contains("reshape") && Contains("overflows"));
  CHECK_THROWS_WITH(ops::reshape(four, {2, -2}), Contains("reshape: invalid shape [2, -2]"));
  CHECK(ops::reshape(four, {2, -1}).shape() == Shape{2, 2});
  // Broadcast dims take no memory, so only the element count can refuse them.
  CHECK_THROWS_WITH(ops::expand(zeros({1, 1}), {P(40), P(40)}), Contains("expand") && Contains("overflows"));
  CHECK(ops::expand(zeros({1, 1}), {P(20), P(20)}).numel() == P(40));
}

TEST_CASE("narrow and as_strided bounds do not overflow", "[core]") {
  Tensor four = zeros({4});
  CHECK_THROWS_WITH(ops::narrow(four, 0, 2, INT64_MAX), Contains("narrow") && Contains("out of range"));
  CHECK_THROWS_WITH(ops::narrow(four, 0, 5, 0), Contains("out of range"));
  CHECK(ops::narrow(four, 0, 4, 0).numel() == 0);
  // The last element's index overflows: refused, not wrapped into the storage.
  CHECK_THROWS_WITH(ops::as_strided(four, {3, 2}, {INT64_MAX / 2, 1}, 0), Contains("reaches past"));
  CHECK_THROWS_WITH(ops::as_strided(four, {2}, {P(61)}, 0), Contains("reaches past"));
  CHECK(ops::as_strided(four, {2, 2}, {2, 1}, 0).numel() == 4);
}

TEST_CASE("allocate refuses byte counts its rounding would wrap", "[core]") {
  CHECK_THROWS_WITH(allocate(SIZE_MAX - 10, Device::cpu()), Contains("allocate") && Contains("2^63"));
}
