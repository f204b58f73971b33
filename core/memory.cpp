#include "fathom/core/memory.h"

#include <atomic>
#include <cstdio>

#include "fathom/core/error.h"

namespace fathom::memory {
namespace {

// Relaxed atomics: each counter is exact on its own; a peak may be read a moment stale by
// another thread, which a report never notices.
struct Counter {
  std::atomic<int64_t> current{0}, peak{0};
  void add(int64_t n) {
    int64_t now = current.fetch_add(n, std::memory_order_relaxed) + n;
    int64_t p = peak.load(std::memory_order_relaxed);
    while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
    }
  }
  Bytes read() const { return {current.load(std::memory_order_relaxed), peak.load(std::memory_order_relaxed)}; }
};
struct DeviceLedger {
  Counter by_category[kCategories];
  Counter total;
};
DeviceLedger ledgers[2];  // DeviceType::CPU, DeviceType::CUDA

DeviceLedger& ledger(DeviceType d) { return ledgers[d == DeviceType::CUDA ? 1 : 0]; }
// -1: no Scope on this thread; the unscoped rule decides.
thread_local int tls_scope = -1;
std::atomic<UnscopedRule> g_rule{nullptr};

std::string human(int64_t b) {
  char buf[32];
  if (b >= (int64_t(1) << 30)) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1073741824.0);
  else if (b >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.2f MB", b / 1048576.0);
  else if (b >= (1 << 10)) std::snprintf(buf, sizeof buf, "%.1f KB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld B", (long long)b);
  return buf;
}

}  // namespace

const char* category_name(Category c) {
  switch (c) {
    case Category::other: return "other";
    case Category::parameters: return "parameters";
    case Category::gradients: return "gradients";
    case Category::optimizer_state: return "optimizer_state";
    case Category::activations: return "activations";
    case Category::communication: return "communication";
  }
  ::fathom::detail::fail("memory: unknown category ", int(c));
}

Scope::Scope(Category c) : previous_(tls_scope) {
  FATHOM_CHECK(int(c) < kCategories, "memory::Scope: unknown category ", int(c));
  tls_scope = int(c);
}
Scope::~Scope() { tls_scope = previous_; }

Category current_category() {
  if (tls_scope >= 0) return Category(tls_scope);
  UnscopedRule rule = g_rule.load(std::memory_order_relaxed);
  return rule ? rule() : Category::other;
}

void set_unscoped_rule(UnscopedRule rule) { g_rule.store(rule, std::memory_order_relaxed); }
UnscopedRule unscoped_rule() { return g_rule.load(std::memory_order_relaxed); }

void count_allocation(DeviceType device, Category c, int64_t bytes) {
  DeviceLedger& l = ledger(device);
  l.by_category[int(c)].add(bytes);
  l.total.add(bytes);
}

void count_free(DeviceType device, Category c, int64_t bytes) {
  DeviceLedger& l = ledger(device);
  l.by_category[int(c)].current.fetch_sub(bytes, std::memory_order_relaxed);
  l.total.current.fetch_sub(bytes, std::memory_order_relaxed);
}

void count_move(DeviceType device, Category from, Category to, int64_t bytes) {
  if (from == to) return;
  DeviceLedger& l = ledger(device);
  l.by_category[int(to)].add(bytes);
  l.by_category[int(from)].current.fetch_sub(bytes, std::memory_order_relaxed);
}

Stats stats(DeviceType device) {
  const DeviceLedger& l = ledger(device);
  Stats s;
  for (int i = 0; i < kCategories; ++i) s.by_category[i] = l.by_category[i].read();
  s.total = l.total.read();
  return s;
}

void reset_peak(DeviceType device) {
  DeviceLedger& l = ledger(device);
  for (Counter& c : l.by_category) c.peak.store(c.current.load(std::memory_order_relaxed), std::memory_order_relaxed);
  l.total.peak.store(l.total.current.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

std::string report(DeviceType device) {
  Stats s = stats(device);
  const char* dev = device == DeviceType::CUDA ? "cuda" : "cpu";
  std::string out;
  for (int i = 0; i < kCategories; ++i) {
    const Bytes& b = s.by_category[i];
    if (b.peak == 0) continue;
    out += std::string("memory ") + dev + ": " + category_name(Category(i)) + " current " +
           human(b.current) + " peak " + human(b.peak) + "\n";
  }
  out += std::string("memory ") + dev + ": total current " + human(s.total.current) + " peak " +
         human(s.total.peak) + "\n";
  return out;
}

}  // namespace fathom::memory
