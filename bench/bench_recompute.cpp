// Activation recomputation on a GPT training step (forward, backward, AdamW): peak activation
// bytes (the memory ledger) and step time with recomputation off, selective (attention's core)
// and full (each block). One JSON line per mode, then one comparing them with the bar of issue
// 16: full cuts activation memory by at least half for at most 35% more step time, and
// selective's time cost is at most a tenth of full's.
//   ./build/bench/bench_recompute                 # L4 H8 C512 T64 B8: about a second a step on 2 cores
//   ./build/bench/bench_recompute --device cuda --layers 12 --embd 768 --block 1024 --batch 8
// The modes' steps are interleaved, so a machine getting busier slows all three alike; each
// mode's loss must equal the plain one bitwise on the CPU ("wrong" counts those that do not).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fathom/comm/flags.h"
#include <fathom.h>

using namespace fathom;

namespace {

struct Run {
  nn::Recompute mode;
  std::shared_ptr<nn::GPT> model;
  std::unique_ptr<optim::AdamW> opt;
  std::vector<double> times;
  int64_t act_peak = 0, total_peak = 0;
  double loss = 0;
};

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_recompute",
                        "GPT step time and peak activation bytes with recomputation off, "
                        "selective and full (JSON lines on stdout).");
  flags.add("layers", "4", "transformer blocks")
      .add("heads", "8", "attention heads")
      .add("embd", "512", "embedding width C")
      .add("block", "64", "sequence length T")
      .add("batch", "8", "batch size B")
      .add("vocab", "256", "vocabulary size")
      .add("dropout", "0.0", "dropout probability (masks are replayed by the recomputation)")
      .add("device", "cpu", "cpu or cuda[:N]")
      .add("steps", "6", "timed steps per mode (after 2 untimed warm-up steps)")
      .add_switch("memory", "print each mode's memory ledger report on stderr");
  flags.parse(argc, argv);
  nn::GPTConfig cfg{flags.positive_i64("vocab"), flags.positive_i64("block"), flags.positive_i64("layers"),
                    flags.positive_i64("heads"), flags.positive_i64("embd"), flags.probability("dropout")};
  int64_t B = flags.positive_i64("batch"), steps = flags.positive_i64("steps");
  Device dev = flags.device("device");
  if (cfg.n_embd % cfg.n_head) flags.fail("--embd must divide by --heads");

  try {
    Tensor idx, tgt;
    {
      NoGradGuard data;  // the batch is no activation of any mode
      Generator g(1);
      idx = ops::to(ops::to(uniform({B, cfg.block_size}, 0, double(cfg.vocab_size), kFloat32, &g), kInt64), dev);
      tgt = ops::to(ops::to(uniform({B, cfg.block_size}, 0, double(cfg.vocab_size), kFloat32, &g), kInt64), dev);
    }
    std::vector<Run> runs;
    for (nn::Recompute m : {nn::Recompute::none, nn::Recompute::selective, nn::Recompute::full}) {
      nn::GPTConfig c = cfg;
      c.recompute = m;
      Generator init(0);
      Run r;
      r.mode = m;
      r.model = std::make_shared<nn::GPT>(c, &init);
      r.model->to(dev);
      r.opt = std::make_unique<optim::AdamW>(r.model->named_parameters(), optim::AdamWOptions(3e-4));
      runs.push_back(std::move(r));
    }
    auto step = [&](Run& r, uint64_t seed) {
      manual_seed(seed);  // every mode draws the same dropout masks
      Tensor l = r.model->forward(idx, tgt);
      l.backward();
      r.opt->step();
      r.opt->zero_grad();
      r.loss = l.item<double>();  // synchronizes with the device
    };
    // Warm-up, then one measured step per mode for the ledger's peaks: activations above what
    // lives between steps.
    for (int i = 0; i < 2; ++i)
      for (Run& r : runs) step(r, uint64_t(i));
    for (Run& r : runs) {
      memory::Stats before = memory::stats(dev.type);
      memory::reset_peak(dev.type);
      step(r, 2);
      memory::Stats after = memory::stats(dev.type);
      r.act_peak = after[memory::Category::activations].peak - before[memory::Category::activations].current;
      r.total_peak = after.total.peak - before.total.current;
      if (flags.boolean("memory"))
        std::fprintf(stderr, "%s:\n%s", nn::recompute_name(r.mode), memory::report(dev.type).c_str());
    }
    for (int64_t i = 0; i < steps; ++i)
      for (Run& r : runs) {
        auto t0 = std::chrono::steady_clock::now();
        step(r, uint64_t(3 + i));
        r.times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    auto median_ms = [](std::vector<double> t) {
      std::sort(t.begin(), t.end());
      return t[t.size() / 2] * 1e3;
    };
    std::string shape = "L" + std::to_string(cfg.n_layer) + " H" + std::to_string(cfg.n_head) + " C" +
                        std::to_string(cfg.n_embd) + " T" + std::to_string(cfg.block_size) + " B" +
                        std::to_string(B) + " V" + std::to_string(cfg.vocab_size);
    double base_ms = median_ms(runs[0].times);
    double base_act = double(runs[0].act_peak);
    int wrong = 0;
    std::vector<double> cost(3), cut(3);
    for (size_t k = 0; k < runs.size(); ++k) {
      Run& r = runs[k];
      double ms = median_ms(r.times);
      cost[k] = ms / base_ms - 1;
      cut[k] = 1 - double(r.act_peak) / base_act;
      bool same = !dev.is_cpu() || r.loss == runs[0].loss;
      wrong += !same;
      std::printf("{\"bench\":\"gpt_recompute\",\"recompute\":\"%s\",\"config\":\"%s\",\"device\":\"%s\","
                  "\"dropout\":%g,\"params\":%lld,\"step_ms\":%.2f,\"act_peak_bytes\":%lld,"
                  "\"total_peak_bytes\":%lld,\"act_cut\":%.3f,\"time_cost\":%.3f,\"loss\":%.6f,"
                  "\"wrong\":%d}\n",
                  nn::recompute_name(r.mode), shape.c_str(), dev.str().c_str(), cfg.dropout,
                  (long long)r.model->num_parameters(), ms, (long long)r.act_peak,
                  (long long)r.total_peak, cut[k], cost[k], r.loss, same ? 0 : 1);
    }
    // Costs are time over the plain step; selective over full compares the two costs.
    double sel_over_full = cost[2] > 0 ? cost[1] / cost[2] : 0;
    bool bar = cut[2] >= 0.5 && cost[2] <= 0.35 && sel_over_full <= 0.1;
    std::printf("{\"bench\":\"gpt_recompute_bar\",\"config\":\"%s\",\"device\":\"%s\",\"full_act_cut\":%.3f,"
                "\"full_time_cost\":%.3f,\"selective_act_cut\":%.3f,\"selective_time_cost\":%.3f,"
                "\"selective_over_full\":%.3f,\"bar_met\":%s,\"wrong\":%d}\n",
                shape.c_str(), dev.str().c_str(), cut[2], cost[2], cut[1], cost[1], sel_over_full,
                bar ? "true" : "false", wrong);
    return wrong ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_recompute: error: %s\n", e.what());
    return 1;
  }
}
