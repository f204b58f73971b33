#pragma once
// Counter-based RNG (Philox-4x32-10). A Generator is (seed, stream, offset): element i of a draw
// uses counter (offset + i/4, stream), so results do not depend on thread count or device, and
// saving the three numbers resumes the stream exactly.
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace fathom {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t stream = 0;  // e.g. the rank, so ranks draw independent streams from one seed
  uint64_t offset = 0;  // in blocks of 4 values
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : state_{seed, stream, 0} {}
  const PhiloxState& state() const { return state_; }
  void set_state(const PhiloxState& s) { state_ = s; }
  void manual_seed(uint64_t seed) { state_ = {seed, state_.stream, 0}; }
  // Reserves n values: returns the state to draw them from and advances past them (and tells
  // the thread's RngRecorders, the first time each sees this generator).
  PhiloxState reserve(uint64_t n);

 private:
  PhiloxState state_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the default generator

// Replaying random draws (activation recomputation, autograd/recompute.h): while a recorder
// lives, every generator the thread draws from is noted with its state before the first draw.
// Recorders nest; a draw is noted by every live one. The generators must outlive any replay.
using GeneratorStates = std::vector<std::pair<Generator*, PhiloxState>>;
class RngRecorder {
 public:
  RngRecorder();
  ~RngRecorder();
  RngRecorder(const RngRecorder&) = delete;
  RngRecorder& operator=(const RngRecorder&) = delete;
  const GeneratorStates& states() const { return states_; }
  void note(Generator* g);  // called by Generator::reserve

 private:
  RngRecorder* outer_;
  GeneratorStates states_;
};

// Sets each generator to its recorded state for the scope, so the region draws the same
// numbers again, and puts every one back where it was when the scope ends: a replay leaves the
// rest of the run's random stream untouched.
class RngReplay {
 public:
  explicit RngReplay(const GeneratorStates& states);
  ~RngReplay();
  RngReplay(const RngReplay&) = delete;
  RngReplay& operator=(const RngReplay&) = delete;

 private:
  GeneratorStates saved_;
};

// The Philox-4x32-10 block function; usable from host and device code.
#if defined(__CUDACC__)
#define FATHOM_HD __host__ __device__
#else
#define FATHOM_HD
#endif
struct Philox4 {
  uint32_t v[4];
};
FATHOM_HD inline Philox4 philox(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = uint32_t(stream),
           c3 = uint32_t(stream >> 32);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}
// A uniform float in [0, 1) from 24 random bits.
FATHOM_HD inline float u01(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

}  // namespace fathom
