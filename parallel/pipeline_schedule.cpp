#include "fathom/parallel/pipeline_schedule.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "fathom/core/error.h"

namespace fathom::parallel {

const char* action_name(ActionKind k) {
  switch (k) {
    case ActionKind::forward: return "F";
    case ActionKind::backward: return "B";
    case ActionKind::backward_input: return "BI";
    case ActionKind::backward_weight: return "W";
  }
  detail::fail("action_name: unknown action ", int(k));
}

std::string action_str(const Action& a) {
  std::ostringstream os;
  os << action_name(a.kind) << a.microbatch;
  if (a.chunk) os << "." << a.chunk;
  return os.str();
}

const char* schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::gpipe: return "gpipe";
    case ScheduleKind::one_f_one_b: return "1f1b";
    case ScheduleKind::interleaved_1f1b: return "interleaved";
    case ScheduleKind::zb_h1: return "zb-h1";
  }
  detail::fail("schedule_name: unknown schedule ", int(k));
}

const std::vector<ScheduleKind>& all_schedules() {
  static const std::vector<ScheduleKind> all{ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                                             ScheduleKind::interleaved_1f1b, ScheduleKind::zb_h1};
  return all;
}

ScheduleKind parse_schedule(const std::string& s) {
  for (ScheduleKind k : all_schedules())
    if (s == schedule_name(k)) return k;
  detail::fail("pipeline schedule '", s, "': expected gpipe, 1f1b, interleaved or zb-h1");
}

namespace {

void check_args(const char* name, int p, int m, int v, int r, bool chunks) {
  FATHOM_CHECK(p >= 1 && m >= 1 && v >= 1, name, " schedule: stages p=", p, ", micro-batches m=",
               m, " and chunks v=", v, " must all be at least 1");
  FATHOM_CHECK(r >= 0 && r < p, name, " schedule: rank ", r, " is outside [0, ", p, ")");
  FATHOM_CHECK(chunks || v == 1, name, " schedule: v=", v, " chunks per rank; only the "
               "interleaved schedule runs more than one chunk per rank");
}

Action F(int mb, int c = 0) { return {ActionKind::forward, mb, c}; }
Action B(int mb, int c = 0) { return {ActionKind::backward, mb, c}; }

}  // namespace

std::vector<Action> gpipe_schedule(int p, int m, int v, int r) {
  check_args("gpipe", p, m, v, r, false);
  std::vector<Action> out;
  for (int i = 0; i < m; ++i) out.push_back(F(i));
  for (int i = 0; i < m; ++i) out.push_back(B(i));
  return out;
}

std::vector<Action> one_f_one_b_schedule(int p, int m, int v, int r) {
  check_args("1f1b", p, m, v, r, false);
  int warmup = std::min(p - r - 1, m);
  std::vector<Action> out;
  for (int i = 0; i < warmup; ++i) out.push_back(F(i));
  for (int i = 0; i < m - warmup; ++i) {
    out.push_back(F(warmup + i));
    out.push_back(B(i));
  }
  for (int i = m - warmup; i < m; ++i) out.push_back(B(i));
  return out;
}

std::vector<Action> interleaved_1f1b_schedule(int p, int m, int v, int r) {
  check_args("interleaved", p, m, v, r, true);
  FATHOM_CHECK(m % p == 0, "interleaved schedule: micro-batches m=", m, " must be a multiple of "
               "the pipeline size p=", p, " (Megatron's requirement: micro-batches go through "
               "the chunks in groups of p); use m=", (m / p + 1) * p, " or the 1f1b schedule");
  int total = m * v;
  // Megatron-LM's forward_backward_pipelining_with_interleaving: k counts this rank's chunk
  // passes in order; a group of p consecutive ks runs one chunk over p micro-batches.
  auto mb_of = [&](int k) { return (k / (p * v)) * p + k % p; };
  auto fchunk = [&](int k) { return (k / p) % v; };
  auto bchunk = [&](int k) { return v - 1 - (k / p) % v; };
  int warmup;
  if (m == p) {
    warmup = total;  // Megatron: every forward first when there is one group of micro-batches
  } else {
    warmup = std::min((p - r - 1) * 2 + (v - 1) * p, total);
  }
  std::vector<Action> out;
  for (int k = 0; k < warmup; ++k) out.push_back(F(mb_of(k), fchunk(k)));
  for (int k = 0; k < total - warmup; ++k) {
    out.push_back(F(mb_of(warmup + k), fchunk(warmup + k)));
    out.push_back(B(mb_of(k), bchunk(k)));
  }
  for (int k = total - warmup; k < total; ++k) out.push_back(B(mb_of(k), bchunk(k)));
  return out;
}

std::vector<Action> zb_h1_schedule(int p, int m, int v, int r) {
  check_args("zb-h1", p, m, v, r, false);
  int warmup = std::min(p - r - 1, m);
  std::vector<Action> out;
  for (int i = 0; i < warmup; ++i) out.push_back(F(i));
  int next_f = warmup, next_b = 0, next_w = 0;
  // Rank r holds back r weight passes: the last rank starts its Ws after p - 1 extra BIs, just
  // when the earlier ranks run out of work and would idle in 1F1B's cool-down.
  while (next_b < m) {
    if (next_f < m) out.push_back(F(next_f++));
    out.push_back({ActionKind::backward_input, next_b++, 0});
    if (next_b - next_w > r) out.push_back({ActionKind::backward_weight, next_w++, 0});
  }
  while (next_w < m) out.push_back({ActionKind::backward_weight, next_w++, 0});
  return out;
}

std::vector<Action> make_schedule(ScheduleKind k, int p, int m, int v, int r) {
  switch (k) {
    case ScheduleKind::gpipe: return gpipe_schedule(p, m, v, r);
    case ScheduleKind::one_f_one_b: return one_f_one_b_schedule(p, m, v, r);
    case ScheduleKind::interleaved_1f1b: return interleaved_1f1b_schedule(p, m, v, r);
    case ScheduleKind::zb_h1: return zb_h1_schedule(p, m, v, r);
  }
  detail::fail("make_schedule: unknown schedule ", int(k));
}

ScheduleSimulation simulate_schedule(const std::vector<std::vector<Action>>& ranks, int m, int v,
                                     ActionCosts costs) {
  int p = int(ranks.size());
  FATHOM_CHECK(p >= 1 && m >= 1 && v >= 1, "simulate_schedule: ", p, " ranks, m=", m, ", v=", v,
               ": all must be at least 1");
  int S = p * v;
  // Per (rank, chunk, micro-batch): the index of its F, B, BI and W in the rank's list.
  enum { kF, kB, kBI, kW, kKinds };
  std::vector<std::vector<std::vector<int>>> pos(
      p, std::vector<std::vector<int>>(v, std::vector<int>(size_t(m) * kKinds, -1)));
  auto slot = [&](int r, const Action& a) -> int& { return pos[r][a.chunk][size_t(a.microbatch) * kKinds + int(a.kind)]; };
  for (int r = 0; r < p; ++r)
    for (int i = 0; i < int(ranks[r].size()); ++i) {
      const Action& a = ranks[r][i];
      FATHOM_CHECK(a.microbatch >= 0 && a.microbatch < m && a.chunk >= 0 && a.chunk < v,
                   "pipeline schedule: rank ", r, " action ", i, " (", action_str(a),
                   ") names a micro-batch or chunk outside m=", m, ", v=", v);
      int& s = slot(r, a);
      FATHOM_CHECK(s < 0, "pipeline schedule: rank ", r, " runs ", action_str(a), " twice (actions ", s, " and ", i, ")");
      s = i;
    }
  for (int r = 0; r < p; ++r)
    for (int c = 0; c < v; ++c)
      for (int mb = 0; mb < m; ++mb) {
        const int* at = &pos[r][c][size_t(mb) * kKinds];
        std::string what = action_str({ActionKind::forward, mb, c}).substr(1);
        FATHOM_CHECK(at[kF] >= 0, "pipeline schedule: rank ", r, " never runs forward ", what);
        bool full = at[kB] >= 0, split = at[kBI] >= 0 || at[kW] >= 0;
        FATHOM_CHECK(full != split && (full || (at[kBI] >= 0 && at[kW] >= 0)),
                     "pipeline schedule: rank ", r, " micro-batch ", what, " needs either one "
                     "backward or one BI and one W");
        int first_b = full ? at[kB] : at[kBI];
        FATHOM_CHECK(at[kF] < first_b, "pipeline schedule: rank ", r, " runs the backward of ",
                     what, " before its forward");
        FATHOM_CHECK(full || at[kBI] < at[kW], "pipeline schedule: rank ", r, " runs W", what,
                     " before BI", what);
      }

  // Event simulation: a rank starts its next action once the rank is free and what it depends
  // on has finished somewhere (messages take no time).
  auto rank_of = [&](int s) { return s % p; };
  auto chunk_of = [&](int s) { return s / p; };
  std::vector<std::vector<std::vector<double>>> done(
      p, std::vector<std::vector<double>>(v, std::vector<double>(size_t(m) * kKinds, -1)));
  auto finish = [&](int s, int mb, int kind) { return done[rank_of(s)][chunk_of(s)][size_t(mb) * kKinds + kind]; };
  // When the gradient for stage s's input is ready: after its B, or its BI when split.
  auto grad_ready = [&](int s, int mb) {
    double b = finish(s, mb, kB);
    return b >= 0 ? b : finish(s, mb, kBI);
  };
  std::vector<size_t> next(p, 0);
  std::vector<double> free_at(p, 0);
  ScheduleSimulation sim;
  sim.busy.assign(p, 0);
  sim.peak_in_flight.assign(p, 0);
  std::vector<int> in_flight(p, 0);
  bool progress = true;
  while (progress) {
    progress = false;
    for (int r = 0; r < p; ++r)
      while (next[r] < ranks[r].size()) {
        const Action& a = ranks[r][next[r]];
        int s = a.chunk * p + r;
        double ready = 0;
        if (a.kind == ActionKind::forward) {
          if (s > 0) ready = finish(s - 1, a.microbatch, kF);
        } else if (a.kind == ActionKind::backward_weight) {
          ready = finish(s, a.microbatch, kBI);
        } else {
          ready = finish(s, a.microbatch, kF);
          if (ready >= 0 && s < S - 1) {
            double g = grad_ready(s + 1, a.microbatch);
            ready = g < 0 ? -1 : std::max(ready, g);
          }
        }
        if (ready < 0) break;  // waits on another rank
        double cost = a.kind == ActionKind::forward ? costs.forward
                      : a.kind == ActionKind::backward ? costs.backward
                      : a.kind == ActionKind::backward_input ? costs.backward_input
                                                             : costs.backward_weight;
        double start = std::max(ready, free_at[r]);
        free_at[r] = start + cost;
        done[r][a.chunk][size_t(a.microbatch) * kKinds + int(a.kind)] = free_at[r];
        sim.busy[r] += cost;
        if (a.kind == ActionKind::forward) sim.peak_in_flight[r] = std::max(sim.peak_in_flight[r], ++in_flight[r]);
        if (a.kind == ActionKind::backward || a.kind == ActionKind::backward_weight) --in_flight[r];
        ++next[r];
        progress = true;
      }
  }
  std::ostringstream stuck;
  for (int r = 0; r < p; ++r)
    if (next[r] < ranks[r].size())
      stuck << " rank " << r << " waits at action " << next[r] << " (" << action_str(ranks[r][next[r]]) << ");";
  FATHOM_CHECK(stuck.str().empty(), "pipeline schedule deadlocks (p=", p, ", m=", m, ", v=", v, "):", stuck.str());
  for (double f : free_at) sim.makespan = std::max(sim.makespan, f);
  for (int r = 0; r < p; ++r) sim.bubble.push_back(1.0 - sim.busy[r] / sim.makespan);
  return sim;
}

ScheduleSimulation simulate_schedule(ScheduleKind k, int p, int m, int v, ActionCosts costs) {
  std::vector<std::vector<Action>> ranks;
  for (int r = 0; r < p; ++r) ranks.push_back(make_schedule(k, p, m, v, r));
  return simulate_schedule(ranks, m, v, costs);
}

double ideal_bubble(ScheduleKind k, int p, int m, int v) {
  switch (k) {
    case ScheduleKind::gpipe:
    case ScheduleKind::one_f_one_b: return double(p - 1) / double(m + p - 1);
    case ScheduleKind::interleaved_1f1b: return double(p - 1) / double(v * m + p - 1);
    case ScheduleKind::zb_h1: return double(p - 1) / double(3 * m + p - 1);
  }
  detail::fail("ideal_bubble: unknown schedule ", int(k));
}

}  // namespace fathom::parallel
