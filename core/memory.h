#pragma once
// The memory ledger: live bytes handed out by fathom::allocate, per device type and category,
// with the peak since the last reset. A thread's allocations are counted under the category of
// its innermost memory::Scope; outside any Scope, under the unscoped rule's choice (`other`
// unless a layer above installs a rule: autograd counts them as activations while grad mode is
// on). A Storage keeps one category for its life unless recount() moves it (a parameter
// registered after it was made, a gradient autograd took over from a backward temporary).
// What is counted is the requested size of live Storages, not what a caching allocator keeps
// reserved behind them. docs/memory.md has the categories and who counts what.
//
//   { memory::Scope s(memory::Category::optimizer_state); exp_avg = zeros_like(p); }
//   std::cout << memory::report(DeviceType::CPU);
#include <cstdint>
#include <string>

#include "fathom/core/device.h"

namespace fathom::memory {

enum class Category : uint8_t {
  other,
  parameters,
  gradients,
  optimizer_state,
  activations,
  communication,
};
inline constexpr int kCategories = 6;
const char* category_name(Category c);

// Allocations on this thread while a Scope lives are counted under its category; scopes nest
// (the innermost wins) and restore the previous category when they end.
class Scope {
 public:
  explicit Scope(Category c);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  int previous_;  // the enclosing Scope's category, or -1 for none
};
// The category an allocation on this thread is counted under now.
Category current_category();

// Picks the category of allocations made outside any Scope (called on the allocating thread).
// core cannot see grad mode, so autograd installs the rule that makes a forward's tensors
// activations; null restores the default, `other`.
using UnscopedRule = Category (*)();
void set_unscoped_rule(UnscopedRule rule);
UnscopedRule unscoped_rule();

struct Bytes {
  int64_t current = 0, peak = 0;
};
struct Stats {
  Bytes by_category[kCategories];
  Bytes total;  // total.peak is the peak of the sum, not the sum of the peaks
  const Bytes& operator[](Category c) const { return by_category[int(c)]; }
};
Stats stats(DeviceType device);
// Peaks restart from the current values (e.g. after set-up, to measure one training step).
void reset_peak(DeviceType device);
// One line per category with bytes in it: "memory cpu: parameters current 1.2 MB peak 1.2 MB".
std::string report(DeviceType device);

// Called by allocate(), Storage::recount and Storage's destructor: the bookkeeping itself.
void count_allocation(DeviceType device, Category c, int64_t bytes);
void count_free(DeviceType device, Category c, int64_t bytes);
// Moves live bytes from one category to another; the total (and its peak) is unchanged.
void count_move(DeviceType device, Category from, Category to, int64_t bytes);

}  // namespace fathom::memory
