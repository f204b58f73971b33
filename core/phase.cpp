#include "fathom/core/phase.h"

#include <chrono>
#include <vector>

#include "fathom/core/error.h"

namespace fathom::phase {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
thread_local std::array<int64_t, kNumPhases> t_ns{};
thread_local std::vector<int> t_stack;  // open scopes, innermost last
thread_local int64_t t_since = 0;       // when the innermost open scope last resumed
}  // namespace

namespace detail {
thread_local bool t_active = false;

void enter(Phase p) {
  int64_t now = now_ns();
  if (!t_stack.empty()) t_ns[size_t(t_stack.back())] += now - t_since;
  t_stack.push_back(int(p));
  t_since = now;
}

void leave() {
  // stop() inside a scope empties the stack; the scope's destructor then has nothing to close.
  if (t_stack.empty()) return;
  int64_t now = now_ns();
  t_ns[size_t(t_stack.back())] += now - t_since;
  t_stack.pop_back();
  t_since = now;
}
}  // namespace detail

const char* name(Phase p) {
  switch (p) {
    case Phase::gemm: return "gemm";
    case Phase::optimizer: return "optimizer";
    case Phase::comm_wait: return "comm_wait";
    case Phase::bucket_copy: return "bucket_copy";
    case Phase::alloc: return "alloc";
  }
  ::fathom::detail::fail("phase::name: unknown phase ", int(p));
}

void start() {
  reset();
  detail::t_active = true;
}

void stop() {
  detail::t_active = false;
  t_stack.clear();
}

bool active() { return detail::t_active; }

void reset() {
  t_ns.fill(0);
  t_since = now_ns();
}

double Totals::sum() const {
  double s = 0;
  for (double x : seconds) s += x;
  return s;
}

Totals totals() {
  Totals t;
  std::array<int64_t, kNumPhases> ns = t_ns;
  if (!t_stack.empty()) ns[size_t(t_stack.back())] += now_ns() - t_since;
  for (int i = 0; i < kNumPhases; ++i) t.seconds[size_t(i)] = 1e-9 * double(ns[size_t(i)]);
  return t;
}

}  // namespace fathom::phase
