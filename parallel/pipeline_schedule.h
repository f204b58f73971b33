#pragma once
// Pipeline schedules as data: for (p stages, m micro-batches, v chunks per rank, rank r), the
// ordered list of compute actions rank r runs in one training step. The executor
// (parallel/pipeline.h) derives all communication from these: a forward of virtual stage s > 0
// first needs the activation from stage s - 1, and a backward of s < S - 1 the gradient from
// s + 1, so a schedule is only compute and a new one is one function (plus its test).
//
// Virtual stages: S = p * v, and chunk c of rank r is virtual stage s = c * p + r (Megatron's
// interleaving: rank 0 holds stages 0, p, 2p, ...). With v = 1 chunk c = 0 and s = r.
//
//   auto actions = parallel::make_schedule(parallel::ScheduleKind::one_f_one_b, 4, 8, 1, rank);
//   parallel::simulate_schedule(kind, 4, 8, 1);  // throws if it could deadlock
//
// docs/pipeline.md has the schedules drawn out and their bubbles.
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::parallel {

enum class ActionKind : uint8_t {
  forward,
  backward,         // input and weight gradients in one pass
  backward_input,   // B of zero-bubble schedules: only the gradient the previous stage needs
  backward_weight,  // W: the parameters' gradients, deferred into the bubble
};
const char* action_name(ActionKind k);  // "F", "B", "BI", "W"

struct Action {
  ActionKind kind = ActionKind::forward;
  int microbatch = 0;
  int chunk = 0;  // this rank's chunk (0 <= chunk < v), not the virtual stage
  bool operator==(const Action& o) const {
    return kind == o.kind && microbatch == o.microbatch && chunk == o.chunk;
  }
};
std::string action_str(const Action& a);  // "F3" or, with chunks, "F3.1"

enum class ScheduleKind : uint8_t { gpipe, one_f_one_b, interleaved_1f1b, zb_h1 };
const char* schedule_name(ScheduleKind k);    // "gpipe", "1f1b", "interleaved", "zb-h1"
ScheduleKind parse_schedule(const std::string& s);  // the names above; an error lists them
const std::vector<ScheduleKind>& all_schedules();

// Each takes (p, m, v, r) and throws fathom::Error naming the schedule and the values when they
// do not fit (p, m >= 1, 0 <= r < p; v = 1 except for interleaved).
// GPipe: all m forwards, then all m backwards. Holds the activations of all m micro-batches.
std::vector<Action> gpipe_schedule(int p, int m, int v, int r);
// 1F1B (PipeDream-flush): min(p - r - 1, m) warm-up forwards, then one forward and one backward
// in turn, then the remaining backwards. Rank r holds at most p - r micro-batches.
std::vector<Action> one_f_one_b_schedule(int p, int m, int v, int r);
// Megatron's interleaved 1F1B: v chunks per rank, m % p == 0. Forward k runs chunk (k / p) % v
// of micro-batch (k / (p v)) p + k % p; backwards walk the chunks in reverse. The bubble is
// that of 1F1B divided by v, for more messages and (p - 1) / (p v) more activation memory.
std::vector<Action> interleaved_1f1b_schedule(int p, int m, int v, int r);
// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): 1F1B's order with each backward
// split into BI and W; rank r lets up to r weight passes wait, so they fill the cool-down
// bubble. Peak in-flight micro-batches p on every rank, as 1F1B's rank 0; with F = BI = W in
// cost the bubble is about a third of 1F1B's.
std::vector<Action> zb_h1_schedule(int p, int m, int v, int r);

std::vector<Action> make_schedule(ScheduleKind k, int p, int m, int v, int r);

// What a unit-cost run of every rank's list gives (costs in arbitrary time units).
struct ActionCosts {
  double forward = 1, backward = 2, backward_input = 1, backward_weight = 1;
};
struct ScheduleSimulation {
  double makespan = 0;               // when the last rank finishes
  std::vector<double> busy;          // per rank: the sum of its actions' costs
  std::vector<double> bubble;        // per rank: 1 - busy / makespan
  std::vector<int> peak_in_flight;   // per rank: most micro-batch chunks forwarded, not yet
                                     // done with (their activations alive)
};

// Checks `ranks` (one list per rank, p = ranks.size()) as a whole: every (micro-batch, chunk)
// of every rank has exactly one forward and either one backward or one BI then one W, a
// forward before its backward, and the lists can all run to the end: each action waits for
// what it depends on (the previous virtual stage's forward, the next one's backward or BI)
// with zero-latency messages. Throws fathom::Error naming the problem (a missing action, or
// the action each stuck rank waits on).
ScheduleSimulation simulate_schedule(const std::vector<std::vector<Action>>& ranks, int m, int v,
                                     ActionCosts costs = {});
// All p ranks of make_schedule(k, p, m, v, r).
ScheduleSimulation simulate_schedule(ScheduleKind k, int p, int m, int v, ActionCosts costs = {});

// The textbook bubble of a schedule with F = BI = W = 1 (B = 2): (p - 1) / (m + p - 1) for
// GPipe and 1F1B, (p - 1) / (v m + p - 1) for interleaved, and for ZB-H1 (p - 1) / (3 m + p - 1)
// (the cool-down's W passes fill two thirds of the 1F1B bubble).
double ideal_bubble(ScheduleKind k, int p, int m, int v);

}  // namespace fathom::parallel
