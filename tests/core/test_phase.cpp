// The phase breakdown (core/phase.h): scopes are exclusive (an inner one pauses the outer), only
// the thread that started counts, nothing counts when off, and the sum never exceeds the wall.
#include <chrono>
#include <thread>

#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/matmul.h"
#include "fathom/core/phase.h"
#include "testing.h"

using namespace fathom;
using phase::Phase;

namespace {
void busy_for(double seconds) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
  }
}
}  // namespace

TEST_CASE("phase: nested scopes are exclusive and sum to at most the wall time") {
  phase::start();
  auto t0 = std::chrono::steady_clock::now();
  {
    phase::Scope outer(Phase::optimizer);
    busy_for(0.02);
    {
      phase::Scope inner(Phase::comm_wait);
      busy_for(0.03);
    }
    busy_for(0.01);
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  phase::Totals t = phase::totals();
  phase::stop();
  CHECK(t[Phase::optimizer] >= 0.03);
  CHECK(t[Phase::optimizer] < 0.03 + 0.01);  // the inner 30 ms are not in it
  CHECK(t[Phase::comm_wait] >= 0.03);
  CHECK(t[Phase::comm_wait] < 0.04);
  CHECK(t.sum() <= wall);
  CHECK(t[Phase::gemm] == 0);
}

TEST_CASE("phase: matmul counts as gemm; off and other threads count nothing") {
  Tensor a = ones({64, 64}), b = ones({64, 64});
  ops::matmul(a, b);  // off: no totals to read, and no cost but a thread-local load
  CHECK_FALSE(phase::active());
  phase::start();
  for (int i = 0; i < 20; ++i) ops::matmul(a, b);
  std::thread other([&] {
    phase::Scope s(Phase::alloc);  // not the started thread: ignored
    busy_for(0.02);
  });
  other.join();
  phase::Totals t = phase::totals();
  phase::stop();
  CHECK(t[Phase::gemm] > 0);
  CHECK(t[Phase::alloc] < 0.02);  // only matmul's own outputs, not the other thread's 20 ms
  CHECK(std::string(phase::name(Phase::bucket_copy)) == "bucket_copy");
}
