#include "fathom/core/random.h"

namespace fathom {

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
thread_local RngRecorder* t_recorder = nullptr;
}

PhiloxState Generator::reserve(uint64_t n) {
  if (t_recorder) t_recorder->note(this);
  PhiloxState s = state_;
  state_.offset += (n + 3) / 4;
  return s;
}

RngRecorder::RngRecorder() : outer_(t_recorder) { t_recorder = this; }
RngRecorder::~RngRecorder() { t_recorder = outer_; }

void RngRecorder::note(Generator* g) {
  bool seen = false;
  for (const auto& [gen, st] : states_) seen = seen || gen == g;
  if (!seen) states_.emplace_back(g, g->state());
  if (outer_) outer_->note(g);
}

RngReplay::RngReplay(const GeneratorStates& states) {
  for (const auto& [gen, st] : states) {
    saved_.emplace_back(gen, gen->state());
    gen->set_state(st);
  }
}

RngReplay::~RngReplay() {
  for (const auto& [gen, st] : saved_) gen->set_state(st);
}

}  // namespace fathom
