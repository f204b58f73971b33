// The distributed optimizer's memory and step time, under mpirun -np 1, 2, 4 (bench/bench_zero.sh
// runs all three). For GPT (nn/gpt.h) with f32 and bf16 parameters and ZeRO-1 and ZeRO-2, one
// JSON line each: per-rank model-state bytes per parameter from the memory ledger (parameters +
// gradients + optimizer_state, the largest over the ranks) between steps, against Megatron's
// formula (AdamW, f32 gradients: ZeRO-1 bf16 6 + 12/dp, f32 8 + 8/dp; ZeRO-2 bf16 2 + 16/dp,
// f32 4 + 12/dp), the peak during a step, and the median step time. stage 0 is plain DDP with a
// replicated AdamW, for the step time only.
//   mpirun -np 2 ./build/bench/bench_zero --config tiny --steps 10
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "bench/gpt_configs.h"
#include "fathom/comm/flags.h"
#include <fathom.h>
#include "fathom/parallel/distributed_optimizer.h"

using namespace fathom;

namespace {

double formula(int stage, DType dt, int dp) {
  bool half = dt != DType::f32;
  if (stage == 1) return half ? 6 + 12.0 / dp : 8 + 8.0 / dp;
  return half ? 2 + 16.0 / dp : 4 + 12.0 / dp;
}

int64_t model_state(const memory::Stats& s, bool peak) {
  int64_t n = 0;
  for (auto c : {memory::Category::parameters, memory::Category::gradients, memory::Category::optimizer_state})
    n += peak ? s[c].peak : s[c].current;
  return n;
}

// The largest value over the ranks (they differ by a bucket's padding at most).
double max_over(comm::ProcessGroup& pg, double v) {
  Tensor t = from_vector(std::vector<double>{v}, {1}, DType::f64);
  pg.allreduce(t, comm::ReduceOp::max)->wait();
  return t.item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_zero", "ZeRO memory per parameter and step time (JSON lines on stdout).");
  flags.add("config", "tiny", std::string(bench::kGptSizesHelp) + "; B is the global batch")
      .add("steps", "10", "timed steps (after 2 untimed warm-up steps)")
      .add("bucket-mb", "1", "DDP bucket cap in MB (ZeRO-2's transient full buckets are one each)");
  flags.parse(argc, argv);
  std::string name = flags.str("config");
  bench::GptSize c = bench::gpt_size(flags, name);
  int64_t steps = flags.positive_i64("steps");
  const comm::InitInfo& info = comm::init();
  comm::ProcessGroup& pg = *info.world;
  const int dp = pg.size(), rank = pg.rank();
  if (c.B % dp) flags.fail("the global batch must divide by the number of ranks");

  for (DType dt : {DType::f32, DType::bf16}) {
    for (int stage : {0, 1, 2}) {
      memory::Stats base = memory::stats(DeviceType::CPU);
      Generator gen(0);
      auto model = std::make_shared<nn::GPT>(nn::GPTConfig{c.V, c.T, c.L, c.H, c.C, 0.0}, &gen);
      model->to(dt);
      int64_t P = model->num_parameters();
      parallel::DistributedDataParallel ddp(model, info.world,
                                            parallel::DDPOptions().bucket_cap_mb(flags.f64("bucket-mb")));
      auto o = optim::AdamWOptions(3e-4).weight_decay(0.1);
      std::unique_ptr<optim::Optimizer> opt;
      if (stage == 0) {
        opt = std::make_unique<optim::AdamW>(model->named_parameters(), o);
        ddp.attach(*opt);
      } else {
        opt = std::make_unique<parallel::DistributedOptimizer<optim::AdamW>>(ddp, o, parallel::ZeroOptions().stage(stage));
      }
      optim::GradScaler clip(optim::GradScalerOptions().enabled(false));
      Generator data(1 + uint64_t(rank));
      int64_t b = c.B / dp;
      Tensor idx = ops::to(uniform({b, c.T}, 0, double(c.V), kFloat32, &data), kInt64);
      Tensor tgt = ops::to(uniform({b, c.T}, 0, double(c.V), kFloat32, &data), kInt64);
      double loss = 0;
      auto step = [&] {
        opt->zero_grad();
        ddp.prepare_forward();
        Tensor l = model->forward(idx, tgt);
        l.backward();
        clip.step(*opt, 1.0);
        loss = l.item<double>();
      };
      for (int i = 0; i < 2; ++i) step();
      memory::reset_peak(DeviceType::CPU);
      std::vector<double> times;
      for (int64_t i = 0; i < steps; ++i) {
        pg.barrier()->wait();  // every rank's step starts together: the median is the job's step
        auto t0 = std::chrono::steady_clock::now();
        step();
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(times.begin(), times.end());
      double step_ms = max_over(pg, times[times.size() / 2]);
      memory::Stats s = memory::stats(DeviceType::CPU);
      auto per_param = [&](memory::Category cat) {
        return max_over(pg, double(s[cat].current - base[cat].current) / double(P));
      };
      double params = per_param(memory::Category::parameters), grads = per_param(memory::Category::gradients),
             state = per_param(memory::Category::optimizer_state);
      double total = max_over(pg, double(model_state(s, false) - model_state(base, false)) / double(P));
      double peak = max_over(pg, double(model_state(s, true) - model_state(base, false)) / double(P));
      if (rank != 0) continue;
      if (stage == 0) {
        // Plain DDP's parameters and replicated optimizer state are not the DistributedOptimizer's
        // to count (docs/zero.md): the step time only, for comparison.
        std::printf("{\"bench\":\"zero\",\"config\":\"%s\",\"dp\":%d,\"dtype\":\"%s\",\"stage\":0,"
                    "\"params\":%lld,\"step_ms\":%.2f,\"loss\":%.4f}\n",
                    name.c_str(), dp, dtype_name(dt), (long long)P, step_ms, loss);
      } else {
        double f = formula(stage, dt, dp);
        std::printf("{\"bench\":\"zero\",\"config\":\"%s\",\"dp\":%d,\"dtype\":\"%s\",\"stage\":%d,"
                    "\"params\":%lld,\"param_bytes\":%.3f,\"grad_bytes\":%.3f,\"optim_bytes\":%.3f,"
                    "\"bytes_per_param\":%.3f,\"formula\":%.3f,\"ratio\":%.4f,\"within_5pct\":%s,"
                    "\"peak_bytes_per_param\":%.3f,\"step_ms\":%.2f,\"loss\":%.4f}\n",
                    name.c_str(), dp, dtype_name(dt), stage, (long long)P, params, grads, state, total, f,
                    total / f, std::fabs(total / f - 1) <= 0.05 ? "true" : "false", peak, step_ms, loss);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
