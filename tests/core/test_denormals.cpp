// Denormal flushing (core/denormals.h): on by default, CPU kernels read and write denormals as
// zero on the calling thread and on the pool's, the caller's own floating-point mode is left as
// it was, and off restores IEEE gradual underflow.
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fathom/core/denormals.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/threads.h"
#include "testing.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace fathom;

namespace {

struct FlushMode {
  explicit FlushMode(bool on) : before(get_flush_denormal()) { set_flush_denormal(on); }
  ~FlushMode() { set_flush_denormal(before); }
  bool before;
};

// Raw copies in and out: a cast kernel would itself flush what it reads or writes.
Tensor raw(const std::vector<float>& v) {
  Tensor t = empty({int64_t(v.size())}, DType::f32);
  std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
  return t;
}
std::vector<float> raw(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}
// x * 1: a denormal stays itself under IEEE rules and becomes 0 when inputs are flushed (DAZ).
std::vector<float> times_one(const std::vector<float>& v) { return raw(ops::binary(BinaryOp::mul, raw(v), 1.0)); }
// FLT_MIN * 0.25: a denormal result, 0 when results are flushed (FTZ).
float quarter_of_min() { return raw(ops::binary(BinaryOp::mul, raw({FLT_MIN}), 0.25))[0]; }

}  // namespace

#if defined(__x86_64__)
TEST_CASE("denormals: flushed by default, on the caller's thread and the pool's") {
  REQUIRE(std::getenv("FATHOM_FLUSH_DENORMAL") == nullptr);
  CHECK(get_flush_denormal());
  const float tiny = FLT_MIN / 4;  // a denormal
  REQUIRE(std::fpclassify(tiny) == FP_SUBNORMAL);
  FlushMode on(true);
  CHECK(times_one({tiny, -tiny, 1.5f}) == std::vector<float>{0.0f, -0.0f, 1.5f});
  // A result that would be denormal (FTZ): FLT_MIN * 0.25.
  CHECK(quarter_of_min() == 0.0f);
  // Large enough to be cut into pieces that the pool's threads run.
  int before = get_num_threads();
  set_num_threads(4);
  std::vector<float> big(1 << 20, tiny);
  std::vector<float> out = times_one(big);
  set_num_threads(before);
  size_t nonzero = 0;
  for (float f : out) nonzero += f != 0.0f;
  CHECK(nonzero == 0);
}

TEST_CASE("denormals: the caller's mode is restored after a kernel") {
  FlushMode on(true);
  unsigned csr = _mm_getcsr();
  REQUIRE((csr & 0x8040u) == 0);  // the test thread itself runs with IEEE rules
  times_one(std::vector<float>(1000, 1.0f));
  CHECK(_mm_getcsr() == csr);
  volatile float tiny = FLT_MIN, quarter = 0.25f;
  CHECK(tiny * quarter != 0.0f);  // plain C++ on this thread still underflows gradually
}

TEST_CASE("denormals: off keeps IEEE gradual underflow") {
  FlushMode off(false);
  CHECK_FALSE(get_flush_denormal());
  const float tiny = FLT_MIN / 4;
  CHECK(times_one({tiny, 2.0f}) == std::vector<float>{tiny, 2.0f});
  CHECK(quarter_of_min() == FLT_MIN / 4);
}
#endif
