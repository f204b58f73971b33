// The memory ledger counts live bytes per category under the innermost Scope, frees them when
// the last tensor on a Storage dies, and keeps the peak of the total until reset_peak.
#include <catch2/catch.hpp>

#include "fathom/core/memory.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;
using memory::Category;

namespace {
int64_t current(Category c) { return memory::stats(DeviceType::CPU)[c].current; }
}  // namespace

TEST_CASE("memory ledger: bytes counted under the innermost scope and freed with the storage", "[core]") {
  int64_t params0 = current(Category::parameters), opt0 = current(Category::optimizer_state);
  int64_t other0 = current(Category::other);
  {
    memory::Scope s(Category::parameters);
    Tensor p = empty({1000}, DType::f32);
    CHECK(current(Category::parameters) - params0 == 4000);
    {
      memory::Scope inner(Category::optimizer_state);
      Tensor m = empty({10, 10}, DType::f64);
      CHECK(current(Category::optimizer_state) - opt0 == 800);
      CHECK(memory::current_category() == Category::optimizer_state);
    }
    CHECK(memory::current_category() == Category::parameters);
    CHECK(current(Category::optimizer_state) == opt0);
    Tensor view = p.view({10, 100});  // a view shares the storage: nothing new is counted
    CHECK(current(Category::parameters) - params0 == 4000);
  }
  CHECK(current(Category::parameters) == params0);
  CHECK(current(Category::other) == other0);
}

TEST_CASE("memory ledger: the unscoped rule picks the category outside any Scope", "[core]") {
  memory::UnscopedRule was = memory::unscoped_rule();
  memory::set_unscoped_rule(nullptr);
  CHECK(memory::current_category() == Category::other);
  memory::set_unscoped_rule([] { return Category::communication; });
  int64_t comm0 = current(Category::communication);
  {
    Tensor t = empty({16}, DType::f32);
    CHECK(current(Category::communication) - comm0 == 64);
    memory::Scope s(Category::gradients);  // a Scope still wins
    CHECK(memory::current_category() == Category::gradients);
  }
  memory::set_unscoped_rule(was);
  CHECK(current(Category::communication) == comm0);
}

TEST_CASE("memory ledger: recount moves a live block to another category, the total unchanged",
          "[core]") {
  int64_t params0 = current(Category::parameters), grads0 = current(Category::gradients);
  Tensor t;
  {
    memory::Scope s(Category::gradients);
    t = empty({250}, DType::f32);
  }
  int64_t total = memory::stats(DeviceType::CPU).total.current;
  t.impl().storage->recount(Category::parameters);
  CHECK(t.impl().storage->category() == Category::parameters);
  CHECK(current(Category::parameters) - params0 == 1000);
  CHECK(current(Category::gradients) == grads0);
  CHECK(memory::stats(DeviceType::CPU).total.current == total);
  t = Tensor();  // freed from where it was moved to
  CHECK(current(Category::parameters) == params0);
}

TEST_CASE("memory ledger: peak of the total survives frees until reset_peak", "[core]") {
  memory::reset_peak(DeviceType::CPU);
  int64_t base = memory::stats(DeviceType::CPU).total.current;
  {
    memory::Scope s(Category::activations);
    Tensor a = empty({1 << 20}, DType::f32);
    Tensor b = empty({1 << 19}, DType::f32);
  }
  memory::Stats st = memory::stats(DeviceType::CPU);
  CHECK(st.total.current == base);
  CHECK(st.total.peak - base >= (int64_t(6) << 20));
  CHECK(st[Category::activations].peak >= (int64_t(6) << 20));
  std::string r = memory::report(DeviceType::CPU);
  CHECK(r.find("activations") != std::string::npos);
  memory::reset_peak(DeviceType::CPU);
  CHECK(memory::stats(DeviceType::CPU).total.peak == base);
}
