// A ResNet training step on synthetic images (forward, cross-entropy, backward, SGD with
// momentum), f32 on the CPU, timed; the same step as bench/torch_resnet_step.py. Alone it is one
// process; under mpirun -np N it is DistributedDataParallel over N ranks, the global batch split
// among them. One JSON line on stdout (rank 0):
//   ./build/bench/bench_resnet --model resnet50 --batch 16 --steps 5
//   mpirun -np 2 ./build/bench/bench_resnet --model resnet50 --batch 16 --steps 5
// images_per_s is the global batch over the median step time (rank 0's, which waits for the
// gradients of every rank); threads per rank come from FATHOM_NUM_THREADS (bench/bench_resnet.sh).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "fathom/comm/flags.h"
#include <fathom.h>

using namespace fathom;

int main(int argc, char** argv) {
  const comm::InitInfo& info = comm::init();
  examples::Flags flags("bench_resnet", "ResNet training-step throughput on synthetic images (a JSON line on stdout).");
  flags.add("model", "resnet50", "resnet18, resnet34, resnet50, resnet101 or resnet152")
      .add("batch", "16", "global batch size (split over the ranks)")
      .add("image", "224", "image height and width")
      .add("classes", "1000", "number of classes")
      .add("steps", "5", "timed steps")
      .add("warmup", "2", "untimed steps first")
      .add("sync-bn", "false", "convert the BatchNorm2d layers to SyncBatchNorm (true/false)")
      .add("label", "", "copied into the JSON line (busy, idle)");
  flags.parse(argc, argv);
  const int64_t batch = flags.positive_i64("batch"), image = flags.positive_i64("image");
  const int64_t steps = flags.positive_i64("steps"), warmup = flags.nonneg_i64("warmup");
  const int world = info.world_size, rank = info.rank;
  try {
    FATHOM_CHECK(batch % world == 0, "bench_resnet: --batch ", batch, " must divide by the ", world, " ranks");
    const std::string name = flags.str("model");
    auto opts = nn::ResNetOptions().num_classes(flags.positive_i64("classes"));
    Generator gen(0);
    std::shared_ptr<nn::ResNet> model;
    if (name == "resnet18") model = nn::resnet18(opts, &gen);
    else if (name == "resnet34") model = nn::resnet34(opts, &gen);
    else if (name == "resnet50") model = nn::resnet50(opts, &gen);
    else if (name == "resnet101") model = nn::resnet101(opts, &gen);
    else if (name == "resnet152") model = nn::resnet152(opts, &gen);
    else detail::fail("bench_resnet: unknown --model '", name, "'");
    const bool sync_bn = flags.str("sync-bn") == "true";
    if (sync_bn) parallel::convert_sync_batchnorm(model, info.world);
    std::unique_ptr<parallel::DistributedDataParallel> ddp;
    if (world > 1) ddp = std::make_unique<parallel::DistributedDataParallel>(model, info.world);
    optim::SGD opt(model->named_parameters(), optim::SGDOptions(0.01).momentum(0.9));
    if (ddp) ddp->attach(opt);
    // This rank's share of one fixed synthetic batch: the step's cost does not depend on values.
    const int64_t local = batch / world;
    Generator data(1 + uint64_t(rank));
    Tensor x = randn({local, 3, image, image}, kFloat32, &data);
    Tensor y = ops::to(uniform({local}, 0, double(opts.num_classes()), kFloat32, &data), kInt64);
    double loss = 0;
    auto step = [&] {
      opt.zero_grad();
      Tensor l = cross_entropy(ddp ? ddp->forward(x) : model->forward(x), y);
      l.backward();
      opt.step();
      loss = l.item<double>();
    };
    for (int64_t i = 0; i < warmup; ++i) step();
    std::vector<double> times;
    for (int64_t i = 0; i < steps; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      step();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    FATHOM_CHECK(std::isfinite(loss), "bench_resnet: the loss is ", loss, ": not training");
    std::sort(times.begin(), times.end());
    double median = times[times.size() / 2];
    if (rank == 0)
      std::printf("{\"bench\":\"resnet_step\",\"framework\":\"fathom\",\"label\":\"%s\",\"model\":\"%s\","
                  "\"ranks\":%d,\"threads\":%d,\"batch\":%lld,\"image\":%lld,\"sync_bn\":%s,\"steps\":%lld,"
                  "\"images_per_s\":%.2f,\"step_ms\":%.1f,\"min_step_ms\":%.1f,\"loss\":%.4f}\n",
                  flags.str("label").c_str(), name.c_str(), world, get_num_threads(), (long long)batch,
                  (long long)image, sync_bn ? "true" : "false", (long long)steps, double(batch) / median,
                  1e3 * median, 1e3 * times.front(), loss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_resnet (rank %d): %s\n", rank, e.what());
    return 1;
  }
  return 0;
}
