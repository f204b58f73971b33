// The data-parallel training step and where its time goes (issue #21), one JSON line per rank:
// the main job's step (Fashion-MNIST MLP 784-512-512-10, AdamW, global batch 128 split over
// the ranks, through DDP and GradScaler::step as examples/fashion_mnist runs it) or a GPT
// training step on random tokens (--model gpt-tiny|gpt-small, bench/gpt_configs.h sizes).
//   ./build/bench/bench_dp_step                                   one rank
//   mpirun -np 2 ./build/bench/bench_dp_step --zero 1             two, optimizer sharded
// Each line has the rank's median step, its mean step and that mean cut into phases
// (core/phase.h, exclusive, on the training thread): gemm, optimizer (its own arithmetic),
// comm_exposed (waiting for, or running inline, a collective: what overlap did not hide),
// bucket_copy (gradients into DDP's buckets, the 1/world scaling riding on it), alloc (host
// allocation and free), and other (forward and backward outside GEMMs, data, loss, bookkeeping);
// then the CPU time per step of the training thread and of every other thread (the comm thread).
// bench/bench_scaling.sh runs it with 1 and 2 ranks, alternating, beside PyTorch DDP.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/cpu_time.h"
#include "bench/gpt_configs.h"
#include "fathom/comm/flags.h"
#include "fathom/core/phase.h"
#include <fathom.h>

using namespace fathom;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One step of the chosen job: returns the loss (a host read, as the example's loop does).
struct Job {
  std::shared_ptr<nn::Module> model;
  std::function<double(parallel::DistributedDataParallel&, optim::Optimizer&, optim::GradScaler&)> step;
  int64_t items_per_step = 0;  // global: samples or tokens
  const char* unit = "samples";
};

Job mlp_job(const examples::Flags& flags, int rank, int world) {
  int64_t batch = flags.positive_i64("batch");
  if (batch % world) flags.fail("--batch " + std::to_string(batch) + " does not split over " + std::to_string(world) + " ranks");
  auto train = std::make_shared<data::FashionMNIST>(flags.str("data"), true);
  Generator gen(0);
  auto model = std::make_shared<nn::Sequential>(nn::Linear(784, 512, &gen), nn::ReLU(),
                                                nn::Linear(512, 512, &gen), nn::ReLU(), nn::Linear(512, 10, &gen));
  auto loader = std::make_shared<data::DataLoader>(train, data::DataLoaderOptions(batch).seed(0).rank(rank).world(world));
  Job j;
  j.model = model;
  j.items_per_step = batch;
  j.step = [loader](parallel::DistributedDataParallel& ddp, optim::Optimizer& opt, optim::GradScaler& scaler) {
    auto [x, y] = loader->next();
    opt.zero_grad();
    Tensor loss = cross_entropy(ddp.forward(x), y);
    loss.backward();
    scaler.step(opt);
    return loss.item<double>();
  };
  return j;
}

Job gpt_job(const examples::Flags& flags, const std::string& name, int rank, int world) {
  bench::GptSize s = bench::gpt_size(flags, name);
  if (s.B % world) flags.fail(name + "'s batch " + std::to_string(s.B) + " does not split over " + std::to_string(world) + " ranks");
  nn::GPTConfig c;
  c.vocab_size = s.V, c.block_size = s.T, c.n_layer = s.L, c.n_head = s.H, c.n_embd = s.C;
  Generator gen(0);
  auto model = std::make_shared<nn::GPT>(c, &gen);
  auto data_gen = std::make_shared<Generator>(1000 + rank);  // each rank its own tokens
  int64_t b = s.B / world, T = s.T, V = s.V;
  Job j;
  j.model = model;
  j.items_per_step = s.B * s.T;
  j.unit = "tokens";
  j.step = [model, data_gen, b, T, V](parallel::DistributedDataParallel& ddp, optim::Optimizer& opt,
                                      optim::GradScaler& scaler) {
    Tensor x = ops::to(uniform({b, T}, 0, double(V), DType::f32, data_gen.get()), DType::i64);
    Tensor y = ops::to(uniform({b, T}, 0, double(V), DType::f32, data_gen.get()), DType::i64);
    opt.zero_grad();
    ddp.prepare_forward();
    Tensor loss = model->forward(x, y);
    loss.backward();
    scaler.step(opt);
    return loss.item<double>();
  };
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_dp_step", "Data-parallel training step with a per-phase breakdown (JSON lines).");
  flags.add("model", "mlp", "mlp (the main job), gpt-tiny or gpt-small")
      .add("steps", "300", "timed steps")
      .add("max-seconds", "20", "stop timing earlier once this many seconds have passed (0: no limit)")
      .add("warmup", "30", "untimed steps first")
      .add("batch", "128", "mlp: global batch, split over the ranks")
      .add("zero", "0", "0: replicated optimizer; 1 or 2: DistributedOptimizer (ZeRO-1/2)")
      .add("bucket-mb", "0", "DDP bucket size in MB (0: DDP's default)")
      .add("overlap", "true", "DDP launches each bucket's reduction as soon as it is ready (false: all after backward)")
      .add("data", data::kFashionMnistDir, "directory with the IDX files")
      .add("label", "", "copied into the JSON lines");
  flags.parse(argc, argv);
  try {
    const comm::InitInfo& info = comm::init();
    int rank = info.rank, world = info.world_size;
    flags.check_same_on_all_ranks(*info.world, {});
    int64_t steps = flags.positive_i64("steps"), warmup = flags.nonneg_i64("warmup"), zero = flags.nonneg_i64("zero");
    double max_seconds = flags.nonneg_f64("max-seconds"), bucket_mb = flags.nonneg_f64("bucket-mb");
    if (zero > 2) flags.fail("--zero must be 0, 1 or 2");
    std::string model_name = flags.str("model");
    Job job = model_name == "mlp" ? mlp_job(flags, rank, world)
              : model_name.rfind("gpt-", 0) == 0 ? gpt_job(flags, model_name.substr(4), rank, world)
                                                  : (flags.fail("--model must be mlp, gpt-tiny or gpt-small"), Job());
    auto dopt = parallel::DDPOptions().overlap(flags.boolean("overlap"));
    if (bucket_mb > 0) dopt.bucket_cap_mb(bucket_mb);
    parallel::DistributedDataParallel ddp(job.model, info.world, dopt);
    auto adamw = optim::AdamWOptions(1e-3).weight_decay(0.01);
    std::unique_ptr<optim::Optimizer> opt;
    if (zero > 0) {
      opt = std::make_unique<parallel::DistributedOptimizer<optim::AdamW>>(ddp, adamw, parallel::ZeroOptions().stage(int(zero)));
    } else {
      opt = std::make_unique<optim::AdamW>(job.model->named_parameters(), adamw);
      ddp.attach(*opt);
    }
    optim::GradScaler scaler(optim::GradScalerOptions().enabled(false));
    double loss = 0;
    for (int64_t i = 0; i < warmup; ++i) loss = job.step(ddp, *opt, scaler);
    // Every rank starts timing together and runs the same number of steps (rank 0 decides when
    // the time is up), so no rank waits in a collective for one still warming up.
    info.world->barrier()->wait();
    std::vector<double> times;
    phase::start();
    // The difference of the two is what the comm thread (and any helper thread) burned, on the
    // cores the training thread needs when ranks have one core each.
    double proc0 = bench::process_cpu_seconds(), thr0 = bench::thread_cpu_seconds();
    auto t_all = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      loss = job.step(ddp, *opt, scaler);
      times.push_back(seconds_since(t0));
      if (max_seconds > 0 && (i + 1) % 10 == 0) {
        Tensor stop = full({1}, rank == 0 && seconds_since(t_all) > max_seconds ? 1.0 : 0.0, DType::f32);
        info.world->broadcast(stop, 0)->wait();
        if (stop.item<float>() > 0) break;
      }
    }
    double total = seconds_since(t_all);
    double proc_cpu = bench::process_cpu_seconds() - proc0, thr_cpu = bench::thread_cpu_seconds() - thr0;
    phase::Totals ph = phase::totals();
    phase::stop();
    int64_t n = int64_t(times.size());
    double mean_ms = 1e3 * total / double(n);
    std::sort(times.begin(), times.end());
    auto per_step = [&](phase::Phase p) { return 1e3 * ph[p] / double(n); };
    double other = mean_ms - 1e3 * ph.sum() / double(n);
    std::printf("{\"bench\":\"dp_step\",\"framework\":\"fathom\",\"model\":\"%s\",\"label\":\"%s\",\"world\":%d,"
                "\"rank\":%d,\"zero\":%lld,\"threads\":%d,\"steps\":%lld,\"%s_per_s\":%.0f,\"step_ms\":%.3f,"
                "\"mean_step_ms\":%.3f,\"gemm_ms\":%.3f,\"optimizer_ms\":%.3f,\"comm_exposed_ms\":%.3f,"
                "\"bucket_copy_ms\":%.3f,\"alloc_ms\":%.3f,\"other_ms\":%.3f,\"train_thread_cpu_ms\":%.3f,"
                "\"other_threads_cpu_ms\":%.3f,\"loss\":%.4f}\n",
                model_name.c_str(), flags.str("label").c_str(), world, rank, (long long)zero, get_num_threads(),
                (long long)n, job.unit, double(n * job.items_per_step) / total, 1e3 * times[size_t(n / 2)], mean_ms,
                per_step(phase::Phase::gemm), per_step(phase::Phase::optimizer), per_step(phase::Phase::comm_wait),
                per_step(phase::Phase::bucket_copy), per_step(phase::Phase::alloc), other, 1e3 * thr_cpu / double(n),
                1e3 * (proc_cpu - thr_cpu) / double(n), loss);
    std::fflush(stdout);
  } catch (const std::exception& e) {
    comm::abort(std::string("bench_dp_step: ") + e.what());
  }
  return 0;
}
