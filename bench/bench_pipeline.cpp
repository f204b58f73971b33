// Pipeline schedules on a synthetic stage, under mpirun (p = the number of ranks):
//   mpirun -np 4 ./build/bench/bench_pipeline --m 8 --unit-ms 4
// Each virtual stage's forward, input-backward (BI) and weight-backward (W) are busy loops of
// the same fixed CPU cost (arithmetic on this thread, not sleep: a sleeping rank would free its
// core and hide contention); a full backward is BI + W. The stage is two recorded nodes, one on
// the input's path and one on a weight's, so grad() to the input runs only the first and
// backward_excluding() only the second (the split Fathom's engine prunes to). With interleaving
// each chunk costs 1/v of a stage, so every schedule does the same work per rank.
//
// One JSON line per schedule (rank 0), after 1 warm-up step, medians over --steps steps:
//   step_ms            wall time of a step (slowest rank)
//   bubble_wall        per rank 1 - (wall time inside actions) / step: the idle fraction. On a
//                      machine with fewer cores than ranks, time-slicing inflates both terms
//   bubble_model       the unit-cost simulation run with the measured mean CPU time of each
//                      action kind (thread CPU clock): the bubble this schedule has when every
//                      rank owns a core, free of the machine's contention
//   bubble_formula     (p-1)/(m+p-1) for GPipe and 1F1B, (p-1)/(vm+p-1) interleaved,
//                      (p-1)/(3m+p-1) ZB-H1
//   peak_in_flight     per rank, micro-batch chunks whose activations were alive at once
//   peak_act_mb        per rank, the memory ledger's peak of activations during the step
//   cost_ms_F_B_BI_W   mean CPU time of each action kind over all ranks
// --stage gpt runs split_gpt's stages instead of the synthetic one (real F, B, BI, W costs).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "fathom/comm/comm.h"
#include "fathom/comm/flags.h"
#include <fathom.h>

using namespace fathom;

namespace {

double thread_cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// A dependent chain of multiply-adds the compiler cannot fold away.
double g_sink = 0;
void spin(int64_t iters) {
  double a = 1.0 + g_sink * 1e-300;
  for (int64_t i = 0; i < iters; ++i) a = a * 0.9999999 + 1e-7;
  g_sink += a;
}

// y = input_path(x) + weight_path(w); each path's forward or backward costs `iters`.
class SpinStage : public nn::Module {
 public:
  SpinStage(int64_t n, int64_t iters) : Module("SpinStage"), iters_(iters) {
    w = register_parameter("w", zeros({n}));
  }
  Tensor forward(const Tensor& x) override {
    int64_t iters = iters_;
    spin(iters);
    // The input path keeps a copy of x, as a layer keeps its input: the activation memory.
    Tensor kept = ops::clone(x);
    Tensor a = autograd::record("spin_input", {x}, kept, [iters](const autograd::Grads& g) -> autograd::Grads {
      spin(iters);
      return {g[0]};
    });
    Tensor b = autograd::record("spin_weight", {w}, ops::clone(w), [iters](const autograd::Grads& g) -> autograd::Grads {
      spin(iters);
      return {g[0]};
    });
    return a + b;
  }
  Tensor w;

 private:
  int64_t iters_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string json_list(const std::vector<double>& v, const char* fmt) {
  std::string s = "[";
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, fmt, v[i]);
    s += (i ? "," : "") + std::string(buf);
  }
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_pipeline", "Pipeline schedules: step time, bubble, activation memory.");
  flags.add("m", "8", "micro-batches per step")
      .add("unit-ms", "4", "CPU cost of one F, BI or W of a stage, in ms")
      .add("numel", "65536", "f32 elements of the activation passed between stages")
      .add("steps", "5", "timed steps per schedule (after 1 warm-up step)")
      .add("v", "2", "chunks per rank for the interleaved schedule")
      .add("stage", "spin", "spin (the synthetic stage) or gpt (split_gpt's stages: real F, B, BI, W costs)")
      .add("gpt-layers", "8", "--stage gpt: n_layer (a multiple of p v)")
      .add("gpt-embd", "128", "--stage gpt: n_embd (4 heads)")
      .add("gpt-seq", "64", "--stage gpt: tokens per sequence")
      .add("gpt-batch", "4", "--stage gpt: sequences per micro-batch");
  flags.parse(argc, argv);
  int m = int(flags.i64("m")), steps = int(flags.i64("steps")), vi = int(flags.i64("v"));
  int64_t n = flags.i64("numel");
  double unit_ms = flags.f64("unit-ms");
  if (m < 1 || steps < 1 || vi < 1 || n < 1 || unit_ms <= 0) flags.fail("every value must be positive");
  bool gpt = flags.str("stage") == "gpt";
  if (!gpt && flags.str("stage") != "spin") flags.fail("--stage must be spin or gpt");
  nn::GPTConfig cfg;
  cfg.vocab_size = 256, cfg.block_size = flags.i64("gpt-seq"), cfg.n_layer = flags.i64("gpt-layers");
  cfg.n_head = 4, cfg.n_embd = flags.i64("gpt-embd");
  int64_t gb = flags.i64("gpt-batch");
  try {
    const comm::InitInfo& info = comm::init();
    auto pg = info.world;
    int p = pg->size(), r = pg->rank();
    // Rank 0 calibrates the loop on its own CPU clock; every rank then runs the same count.
    Tensor cal = zeros({1}, kFloat64);
    if (r == 0) {
      int64_t probe = 20'000'000;
      double c0 = thread_cpu_now();
      spin(probe);
      double per_ms = double(probe) / ((thread_cpu_now() - c0) * 1e3);
      cal = full({1}, per_ms, kFloat64);
    }
    pg->broadcast(cal, 0)->wait();
    double iters_per_ms = to_vector(cal)[0];
    if (r == 0)
      std::fprintf(stderr, "bench_pipeline: p=%d m=%d unit %.1f ms = %.0f iterations (busy machine: "
                 "timings are noisy)\n", p, m, unit_ms, unit_ms * iters_per_ms);

    for (parallel::ScheduleKind kind : parallel::all_schedules()) {
      int v = kind == parallel::ScheduleKind::interleaved_1f1b ? vi : 1;
      if (kind == parallel::ScheduleKind::interleaved_1f1b && m % p != 0) {
        if (r == 0) std::fprintf(stderr, "bench_pipeline: interleaved skipped, m=%d is not a multiple of p=%d\n", m, p);
        continue;
      }
      auto iters = int64_t(unit_ms * iters_per_ms / v);
      std::vector<std::shared_ptr<nn::Module>> chunks;
      parallel::PipelineLoss loss = [n](const Tensor& y, const Tensor&) { return y.sum() * (1.0 / double(n)); };
      Shape act{n};
      std::vector<Tensor> inputs, targets;
      if (gpt) {
        if (cfg.n_layer % (p * v) != 0) {
          if (r == 0) std::fprintf(stderr, "bench_pipeline: %s skipped, n_layer %lld is not a multiple of p v\n",
                                   parallel::schedule_name(kind), (long long)cfg.n_layer);
          continue;
        }
        chunks = parallel::split_gpt(cfg, 0, p, r, v).chunks;
        loss = parallel::gpt_loss;
        act = {gb, cfg.block_size, cfg.n_embd};
        Generator g(7);
        for (int i = 0; i < m; ++i) {
          inputs.push_back(ops::to(uniform({gb, cfg.block_size}, 0, 256, kFloat32, &g), kInt64));
          targets.push_back(ops::to(uniform({gb, cfg.block_size}, 0, 256, kFloat32, &g), kInt64));
        }
      } else {
        for (int c = 0; c < v; ++c) chunks.push_back(std::make_shared<SpinStage>(n, iters));
        for (int i = 0; i < m; ++i) {
          inputs.push_back(full({n}, 0.5));
          targets.push_back(zeros({1}));
        }
      }
      parallel::Pipeline pipe(*pg, chunks, loss,
                              parallel::PipelineOptions().schedule(kind).microbatches(m).activation_shape(act));
      std::vector<double> wall, busy_wall;
      double cost[4] = {0, 0, 0, 0}, count[4] = {0, 0, 0, 0}, act_peak = 0;
      for (int s = 0; s < steps + 1; ++s) {
        pg->barrier()->wait();
        int64_t act0 = memory::stats(DeviceType::CPU)[memory::Category::activations].current;
        memory::reset_peak(DeviceType::CPU);
        pipe.step(inputs, targets);
        if (s == 0) continue;  // warm-up
        const parallel::PipelineStepStats& st = pipe.last_step();
        wall.push_back(st.wall_s);
        busy_wall.push_back(st.compute_s);
        for (size_t i = 0; i < pipe.actions().size(); ++i) {
          int k = int(pipe.actions()[i].kind);
          cost[k] += st.action_cpu_s[i];
          count[k] += 1;
        }
        int64_t peak = memory::stats(DeviceType::CPU)[memory::Category::activations].peak - act0;
        act_peak = std::max(act_peak, double(peak) / 1048576.0);
      }
      // Per rank: median step, median busy, peaks; all gathered on every rank.
      double step_s = median(wall), busy_s = median(busy_wall);
      Tensor mine = from_vector(std::vector<double>{step_s, busy_s, double(pipe.last_step().peak_in_flight),
                                                    act_peak, cost[0], count[0], cost[1], count[1],
                                                    cost[2], count[2], cost[3], count[3]}, {12}, kFloat64);
      Tensor all = zeros({int64_t(p) * 12}, kFloat64);
      pg->allgather(all, mine)->wait();
      std::vector<double> a = to_vector(all);
      double step_max = 0;
      std::vector<double> bubble_wall, in_flight, act_mb;
      double kc[4] = {0, 0, 0, 0}, kn[4] = {0, 0, 0, 0};
      for (int q = 0; q < p; ++q) step_max = std::max(step_max, a[size_t(q) * 12]);
      for (int q = 0; q < p; ++q) {
        const double* row = &a[size_t(q) * 12];
        bubble_wall.push_back(1.0 - row[1] / step_max);
        in_flight.push_back(row[2]);
        act_mb.push_back(row[3]);
        for (int k = 0; k < 4; ++k) kc[k] += row[4 + 2 * k], kn[k] += row[5 + 2 * k];
      }
      parallel::ActionCosts costs;
      double* fields[4] = {&costs.forward, &costs.backward, &costs.backward_input, &costs.backward_weight};
      for (int k = 0; k < 4; ++k)
        if (kn[k] > 0) *fields[k] = kc[k] / kn[k];
      parallel::ScheduleSimulation sim = parallel::simulate_schedule(kind, p, m, v, costs);
      if (r == 0) {
        std::vector<double> cost_ms;
        for (int k = 0; k < 4; ++k) cost_ms.push_back(kn[k] > 0 ? 1e3 * kc[k] / kn[k] : 0.0);
        std::printf("{\"bench\":\"pipeline\",\"stage\":\"%s\",\"schedule\":\"%s\",\"p\":%d,\"m\":%d,\"v\":%d,\"unit_ms\":%.2f,"
                    "\"cost_ms_F_B_BI_W\":%s,\"step_ms\":%.2f,\"ideal_step_ms\":%.2f,\"bubble_wall\":%s,\"bubble_model\":%.3f,"
                    "\"bubble_formula\":%.3f,\"peak_in_flight\":%s,\"peak_act_mb\":%s,\"busy\":true}\n",
                    gpt ? "gpt" : "spin", parallel::schedule_name(kind), p, m, v, unit_ms,
                    json_list(cost_ms, "%.2f").c_str(), step_max * 1e3, gpt ? 0.0 : 3.0 * m * unit_ms,
                    json_list(bubble_wall, "%.3f").c_str(), *std::max_element(sim.bubble.begin(), sim.bubble.end()),
                    parallel::ideal_bubble(kind, p, m, v), json_list(in_flight, "%.0f").c_str(),
                    json_list(act_mb, "%.2f").c_str());
        std::fflush(stdout);
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_pipeline: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
