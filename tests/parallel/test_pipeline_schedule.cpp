// Pipeline schedules as data: their structure, the validator over a grid of (p, m, v), the
// unit-cost bubbles against the textbook formulas, memory bounds, and bad arguments.
#include "testing.h"

#include "fathom/parallel/pipeline_schedule.h"

using namespace fathom;
using namespace fathom::parallel;

namespace {
std::string str(const std::vector<Action>& list) {
  std::string s;
  for (const Action& a : list) s += (s.empty() ? "" : " ") + action_str(a);
  return s;
}
}  // namespace

TEST_CASE("pipeline schedules: the action lists of p=4, m=6", "[pipeline]") {
  CHECK(str(gpipe_schedule(4, 3, 1, 2)) == "F0 F1 F2 B0 B1 B2");
  CHECK(str(one_f_one_b_schedule(4, 6, 1, 0)) == "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  CHECK(str(one_f_one_b_schedule(4, 6, 1, 3)) == "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5");
  CHECK(str(one_f_one_b_schedule(4, 2, 1, 0)) == "F0 F1 B0 B1");  // fewer micro-batches than warm-up
  // ZB-H1: the last rank lets p - 1 = 3 weight passes wait, the first none.
  CHECK(str(zb_h1_schedule(4, 6, 1, 0)) == "F0 F1 F2 F3 BI0 W0 F4 BI1 W1 F5 BI2 W2 BI3 W3 BI4 W4 BI5 W5");
  CHECK(str(zb_h1_schedule(4, 6, 1, 3)) == "F0 BI0 F1 BI1 F2 BI2 F3 BI3 W0 F4 BI4 W1 F5 BI5 W2 W3 W4 W5");
  // Interleaved, p=2, v=2, m=4 (Megatron's order): forwards of micro-batches 0, 1 on chunk 0,
  // then 0, 1 on chunk 1, then 2, 3 on chunk 0, ...; backwards walk the chunks in reverse.
  CHECK(str(interleaved_1f1b_schedule(2, 4, 2, 0)) ==
        "F0 F1 F0.1 F1.1 F2 B0.1 F3 B1.1 F2.1 B0 F3.1 B1 B2.1 B3.1 B2 B3");
  CHECK(str(interleaved_1f1b_schedule(2, 4, 2, 1)) ==
        "F0 F1 F0.1 B0.1 F1.1 B1.1 F2 B0 F3 B1 F2.1 B2.1 F3.1 B3.1 B2 B3");
}

TEST_CASE("pipeline schedules: every schedule is valid over a grid of (p, m, v)", "[pipeline]") {
  for (ScheduleKind k : all_schedules())
    for (int p = 1; p <= 5; ++p)
      for (int m = 1; m <= 10; ++m)
        for (int v = 1; v <= 3; ++v) {
          bool interleaved = k == ScheduleKind::interleaved_1f1b;
          if (v > 1 && !interleaved) continue;
          if (interleaved && m % p != 0) continue;
          INFO(schedule_name(k) << " p=" << p << " m=" << m << " v=" << v);
          ActionCosts costs;
          // A chunk is 1/v of a rank's layers, so its passes cost 1/v as much.
          costs.forward = 1.0 / v, costs.backward = 2.0 / v;
          costs.backward_input = 1.0 / v, costs.backward_weight = 1.0 / v;
          ScheduleSimulation sim = simulate_schedule(k, p, m, v, costs);
          double work = 3.0 * m;  // every rank's F + B over all micro-batches and chunks
          for (int r = 0; r < p; ++r) {
            CHECK(sim.busy[r] == Approx(work));
            if (k == ScheduleKind::gpipe) CHECK(sim.peak_in_flight[r] == m);
            if (k == ScheduleKind::one_f_one_b) CHECK(sim.peak_in_flight[r] == std::min(p - r, m));
            if (k == ScheduleKind::zb_h1) CHECK(sim.peak_in_flight[r] <= std::min(p, m));
          }
          double ideal = ideal_bubble(k, p, m, v), worst = *std::max_element(sim.bubble.begin(), sim.bubble.end());
          if (k == ScheduleKind::gpipe || k == ScheduleKind::one_f_one_b) {
            CHECK(sim.makespan == Approx(3.0 * (m + p - 1)));  // exactly the formula
            CHECK(worst == Approx(ideal));
          } else {
            double one_f_one_b = ideal_bubble(ScheduleKind::one_f_one_b, p, m, 1);
            CHECK(worst <= one_f_one_b + 1e-12);
            if (p > 1 && m >= p && (v > 1 || k == ScheduleKind::zb_h1)) CHECK(worst < one_f_one_b);
          }
        }
}

TEST_CASE("pipeline schedules: ZB-H1 and interleaved reach their textbook bubbles", "[pipeline]") {
  // With m >> p the steady state dominates; the cool-down is what the schedules shrink.
  for (int p : {2, 4}) {
    int m = 4 * p;
    ScheduleSimulation zb = simulate_schedule(ScheduleKind::zb_h1, p, m, 1);
    // (p - 1) (F + B - W) idle per rank: a third of 1F1B's (p - 1) (F + B).
    CHECK(zb.makespan == Approx(3.0 * m + (p - 1)));
    ActionCosts half;
    half.forward = 0.5, half.backward = 1.0;
    ScheduleSimulation il = simulate_schedule(ScheduleKind::interleaved_1f1b, p, m, 2, half);
    CHECK(il.makespan == Approx(3.0 * m + 3.0 * (p - 1) / 2));
    for (int r = 0; r < p; ++r) {
      CHECK(zb.bubble[r] == Approx(ideal_bubble(ScheduleKind::zb_h1, p, m, 1)));
      CHECK(il.bubble[r] == Approx(ideal_bubble(ScheduleKind::interleaved_1f1b, p, m, 2)));
    }
  }
}

TEST_CASE("pipeline schedules: the validator names what is wrong", "[pipeline]") {
  auto F = [](int mb) { return Action{ActionKind::forward, mb, 0}; };
  auto B = [](int mb) { return Action{ActionKind::backward, mb, 0}; };
  // Rank 1 starts with micro-batch 1, rank 0 with 0: each waits for the other.
  std::vector<std::vector<Action>> crossed{{F(0), B(0), F(1), B(1)}, {F(1), B(1), F(0), B(0)}};
  CHECK_THROWS_WITH(simulate_schedule(crossed, 2, 1),
                    Catch::Contains("deadlocks") && Catch::Contains("rank 0 waits at action 1 (B0)"));
  std::vector<std::vector<Action>> missing{{F(0), F(1), B(0)}};
  CHECK_THROWS_WITH(simulate_schedule(missing, 2, 1), Catch::Contains("micro-batch 1 needs either"));
  std::vector<std::vector<Action>> early{{B(0), F(0)}};
  CHECK_THROWS_WITH(simulate_schedule(early, 1, 1), Catch::Contains("backward of 0 before its forward"));
  std::vector<std::vector<Action>> twice{{F(0), F(0), B(0)}};
  CHECK_THROWS_WITH(simulate_schedule(twice, 1, 1), Catch::Contains("runs F0 twice"));
  std::vector<std::vector<Action>> outside{{F(0), B(0), F(2)}};
  CHECK_THROWS_WITH(simulate_schedule(outside, 2, 1), Catch::Contains("outside m=2"));
  std::vector<std::vector<Action>> w_first{{F(0), {ActionKind::backward_weight, 0, 0}, {ActionKind::backward_input, 0, 0}}};
  CHECK_THROWS_WITH(simulate_schedule(w_first, 1, 1), Catch::Contains("runs W0 before BI0"));
}

TEST_CASE("pipeline schedules: bad arguments are errors", "[pipeline]") {
  CHECK_THROWS_WITH(interleaved_1f1b_schedule(4, 6, 2, 0),
                    Catch::Contains("m=6 must be a multiple of the pipeline size p=4") &&
                        Catch::Contains("use m=8"));
  CHECK_THROWS_WITH(one_f_one_b_schedule(2, 4, 2, 0), Catch::Contains("only the interleaved schedule"));
  CHECK_THROWS_WITH(gpipe_schedule(2, 0, 1, 0), Catch::Contains("must all be at least 1"));
  CHECK_THROWS_WITH(zb_h1_schedule(2, 4, 1, 2), Catch::Contains("rank 2 is outside [0, 2)"));
  CHECK_THROWS_WITH(parse_schedule("1F1B"), Catch::Contains("expected gpipe, 1f1b, interleaved or zb-h1"));
  for (ScheduleKind k : all_schedules()) CHECK(parse_schedule(schedule_name(k)) == k);
}
