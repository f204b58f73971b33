#pragma once
// The memory ledger: live bytes handed out by fathom::allocate, per device type and category,
// with the peak since the last reset. A thread's allocations are counted under the category of
// its innermost memory::Scope (Category::other outside any). What is counted is the requested
// size of live Storages, not what a caching allocator keeps reserved behind them.
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
  Category previous_;
};
Category current_category();

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

// Called by allocate() and by Storage's destructor: the bookkeeping itself.
void count_allocation(DeviceType device, Category c, int64_t bytes);
void count_free(DeviceType device, Category c, int64_t bytes);

}  // namespace fathom::memory
