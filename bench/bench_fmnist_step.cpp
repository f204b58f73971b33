// The training step of examples/fashion_mnist on one process (MLP 784-512-512-10, ReLU, AdamW
// with weight decay 0.01, batch 128 from the DataLoader over Debian's Fashion-MNIST), timed; the
// same step as bench/torch_fmnist_step.py. One JSON line on stdout:
//   ./build/bench/bench_fmnist_step --steps 300 --label idle
// samples_per_s counts every timed step (what a run on a busy machine gets); step_ms is the
// median step; cpu_ms_per_step is the CPU time of all threads per step (work plus waiting).
// bench/bench_under_load.sh runs it idle and beside a competing process.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "bench/cpu_time.h"
#include "fathom/comm/flags.h"
#include <fathom.h>

using namespace fathom;


int main(int argc, char** argv) {
  examples::Flags flags("bench_fmnist_step", "Fashion-MNIST MLP training-step throughput (a JSON line on stdout).");
  flags.add("steps", "300", "timed steps")
      .add("max-seconds", "30", "stop timing earlier once this many seconds have passed (0: no limit)")
      .add("warmup", "20", "untimed steps first")
      .add("batch", "128", "batch size (the example's default)")
      .add("data", data::kFashionMnistDir, "directory with the IDX files")
      .add("label", "", "copied into the JSON line (idle, loaded)");
  flags.parse(argc, argv);
  int64_t steps = flags.positive_i64("steps"), warmup = flags.nonneg_i64("warmup");
  int64_t batch = flags.positive_i64("batch");
  double max_seconds = flags.nonneg_f64("max-seconds");
  try {
    auto train = std::make_shared<data::FashionMNIST>(flags.str("data"), true);
    Generator gen(0);
    auto model = std::make_shared<nn::Sequential>(nn::Linear(784, 512, &gen), nn::ReLU(),
                                                  nn::Linear(512, 512, &gen), nn::ReLU(),
                                                  nn::Linear(512, 10, &gen));
    optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(1e-3).weight_decay(0.01));
    data::DataLoader loader(train, data::DataLoaderOptions(batch).seed(0));
    double first_loss = 0, loss = 0;
    auto step = [&] {
      auto [x, y] = loader.next();
      opt.zero_grad();
      Tensor l = cross_entropy(model->forward(x), y);
      l.backward();
      opt.step();
      loss = l.item<double>();
    };
    for (int64_t i = 0; i < warmup; ++i) step();
    first_loss = loss;
    std::vector<double> times;
    auto t_all = std::chrono::steady_clock::now();
    double total = 0, cpu0 = bench::process_cpu_seconds();
    for (int64_t i = 0; i < steps && !(max_seconds > 0 && total > max_seconds); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      step();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
    }
    steps = int64_t(times.size());
    double cpu_ms = 1e3 * (bench::process_cpu_seconds() - cpu0) / double(steps);
    // A step that trains: the loss is finite and, past the warm-up, lower than at its start.
    if (!std::isfinite(loss) || (warmup > 0 && steps >= 100 && !(loss < first_loss * 1.5))) {
      std::fprintf(stderr, "bench_fmnist_step: the loss went from %.4f to %.4f: not training\n", first_loss, loss);
      return 1;
    }
    std::sort(times.begin(), times.end());
    std::printf("{\"bench\":\"fmnist_step\",\"framework\":\"fathom\",\"label\":\"%s\",\"threads\":%d,"
                "\"batch\":%lld,\"steps\":%lld,\"samples_per_s\":%.0f,\"step_ms\":%.3f,\"cpu_ms_per_step\":%.3f,"
                "\"loss\":%.4f}\n",
                flags.str("label").c_str(), get_num_threads(), (long long)batch, (long long)steps,
                double(steps * batch) / total, 1e3 * times[times.size() / 2], cpu_ms, loss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fmnist_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
