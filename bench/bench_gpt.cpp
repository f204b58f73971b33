// GPT training-step throughput, the same model and step as ../shared/anchors/torch_gpt_bench.py
// (random tokens, tied embeddings, GELU tanh, pre-LayerNorm, AdamW), one JSON line per run:
//   ./build/bench/bench_gpt --config tiny --device cpu --dtype f32
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "bench/gpt_configs.h"
#include "fathom/comm/flags.h"
#include <fathom.h>
#include "fathom/optim/optimizer.h"

using namespace fathom;

int main(int argc, char** argv) {
  examples::Flags flags("bench_gpt", "GPT training-step throughput (JSON lines on stdout).");
  flags.add("config", "tiny", bench::kGptSizesHelp)
      .add("device", "cpu", "cpu or cuda[:N]")
      .add("dtype", "f32", "f32 or bf16 (parameters and activations)")
      .add("steps", "20", "timed steps (after 3 untimed warm-up steps)")
      .add_switch("memory", "print the memory ledger (peaks over the run) on stderr");
  flags.parse(argc, argv);
  std::string name = flags.str("config");
  bench::GptSize c = bench::gpt_size(flags, name);
  Device dev = Device::parse(flags.str("device"));
  DType dt = parse_dtype(flags.str("dtype"));
  int64_t steps = flags.i64("steps");

  Generator gen(0);
  auto model = std::make_shared<nn::GPT>(nn::GPTConfig{c.V, c.T, c.L, c.H, c.C, 0.0}, &gen);
  model->to(dev);
  model->to(dt);
  optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(3e-4));
  Tensor idx = ops::to(ops::to(uniform({c.B, c.T}, 0, double(c.V), kFloat32, &gen), kInt64), dev);
  Tensor tgt = ops::to(ops::to(uniform({c.B, c.T}, 0, double(c.V), kFloat32, &gen), kInt64), dev);
  double loss = 0;
  auto step = [&] {
    Tensor l = model->forward(idx, tgt);
    l.backward();
    opt.step();
    opt.zero_grad();
    loss = l.item<double>();  // synchronizes with the device, as the anchor's final sync does
  };
  for (int i = 0; i < 3; ++i) step();
  std::vector<double> times;
  for (int64_t i = 0; i < steps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  double med = times[times.size() / 2];
  double tok = double(c.B * c.T) / med;
  double flops_tok = 6.0 * double(model->num_parameters()) + 6.0 * double(c.L * c.T * c.C);
  std::printf("{\"bench\":\"gpt_train_step\",\"config\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\","
              "\"params\":%lld,\"step_ms\":%.2f,\"tokens_per_s\":%.0f,\"tflops\":%.3f,\"loss\":%.3f}\n",
              name.c_str(), dev.str().c_str(), dtype_name(dt), (long long)model->num_parameters(),
              med * 1e3, tok, tok * flops_tok / 1e12, loss);
  if (flags.boolean("memory")) std::fprintf(stderr, "%s", memory::report(dev.type).c_str());
  return 0;
}
