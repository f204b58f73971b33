// How much of DDP's gradient all-reduce hides behind backprop. Under mpirun, one JSON line per
// variant (rank 0), each the median step time over --steps steps of the same model and batch:
//   compute:    forward + backward + AdamW on the plain module (no communication at all)
//   ddp:        DDP as users run it: buckets launched from the gradient hooks during backward
//   serial:     the same DDP buckets launched only after backward ends (DDPOptions::overlap
//               = false): compute followed by an un-overlapped all-reduce
// and a summary: hidden = (serial - ddp) / (serial - compute), the fraction of the exposed
// communication time that overlap removed.
// On a GPU (--device cuda, DDP over NCCL) the host never waits for communication, so only the
// step times mean something there; wait_after_backward_ms is the host's view.
//   mpirun -np 2 ./build/bench/bench_ddp_overlap --layers 8 --width 1024
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "fathom/comm/comm.h"
#include "fathom/comm/flags.h"
#include <fathom.h>
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"

using namespace fathom;

namespace {

std::shared_ptr<nn::Sequential> make_model(int64_t layers, int64_t width) {
  Generator gen(1);
  auto seq = std::make_shared<nn::Sequential>();
  for (int64_t i = 0; i < layers; ++i) {
    seq->push_back(std::make_shared<nn::Linear>(nn::LinearOptions(width, width), &gen));
    seq->push_back(std::make_shared<nn::ReLU>());
  }
  return seq;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_ddp_overlap", "DDP step time: compute only, overlapped, serial.");
  flags.add("layers", "8", "Linear+ReLU layers (width x width each)")
      .add("width", "1024", "layer width")
      .add("batch", "64", "batch per rank")
      .add("steps", "20", "timed steps per variant (after 3 warm-up steps)")
      .add("bucket-mb", "25", "DDP bucket cap in MB (the first bucket is 1 MB)")
      .add("only", "", "run just this variant (compute, ddp or serial), e.g. under perf")
      .add("device", "cpu", "cpu, or cuda for this rank's GPU (DDP over NCCL), or cuda:N")
      .add("profile", "", "write each variant's timeline (Chrome trace) to PREFIX.<variant>.rank<R>.json");
  flags.parse(argc, argv);
  int64_t layers = flags.i64("layers"), width = flags.i64("width"), batch = flags.i64("batch");
  int64_t steps = flags.i64("steps");
  if (layers < 1 || width < 1 || batch < 1 || steps < 1) flags.fail("sizes and --steps must be positive");
  try {
    const comm::InitInfo& info = comm::init();
    auto pg = info.world;
    Device dev = flags.rank_device("device", info.device);
    Generator data_gen(uint64_t(100 + info.rank));
    Tensor x = ops::to(randn({batch, width}, kFloat32, &data_gen), dev);
    Tensor y = ops::to(ops::to(uniform({batch}, 0, double(width), kFloat32, &data_gen), kInt64), dev);

    auto run = [&](const char* name, int mode) {  // 0 compute, 1 ddp, 2 serial
      auto model = make_model(layers, width);
      model->to(dev);
      optim::AdamW opt(model->named_parameters());
      std::unique_ptr<parallel::DistributedDataParallel> ddp;
      if (mode > 0) {
        auto o = parallel::DDPOptions().bucket_cap_mb(flags.f64("bucket-mb")).overlap(mode == 1);
        ddp = std::make_unique<parallel::DistributedDataParallel>(model, pg, o);
        ddp->attach(opt);
      }
      const std::string& profile = flags.str("profile");
      if (!profile.empty()) trace::start();
      std::vector<double> times;
      double comm_ms = 0;
      for (int64_t s = 0; s < steps + 3; ++s) {
        pg->barrier()->wait();  // every rank starts the step together
        auto t0 = std::chrono::steady_clock::now();
        opt.zero_grad();
        Tensor out = ddp ? ddp->forward(x) : model->forward(x);
        Tensor loss = cross_entropy(out, y);
        loss.backward();
        opt.step();
        // On a GPU the host is ahead of the device: copying the loss out on the compute
        // stream, after the step's kernels, waits for the whole step.
        if (dev.is_cuda()) loss.item<double>();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (s < 3) continue;
        times.push_back(ms);
        if (ddp) comm_ms += (ddp->last_step().sync_end_us - ddp->last_step().backward_end_us) / 1e3;
      }
      if (!profile.empty()) {
        trace::stop();
        trace::Snapshot snap = trace::snapshot();
        logging::write_text_file(profile + "." + name + ".rank" + std::to_string(info.rank) + ".json",
                             logging::chrome_trace_document({logging::chrome_trace_events(snap, info.rank, logging::earliest_begin(snap))}));
      }
      // The slowest rank sets the pace: report the max over ranks of each rank's median.
      Tensor t = from_vector(std::vector<double>{median(times), comm_ms / double(steps)}, {2});
      pg->allreduce(t, comm::ReduceOp::max)->wait();
      auto v = to_vector(t);
      int64_t params = 0;
      for (auto& [n, p] : model->named_parameters()) params += p.numel();
      if (info.rank == 0) {
        std::printf("{\"bench\":\"ddp_overlap\",\"variant\":\"%s\",\"ranks\":%d,\"params\":%lld,"
                    "\"grad_mb\":%.1f,\"buckets\":%zu,\"step_ms\":%.2f,\"wait_after_backward_ms\":%.2f}\n",
                    name, pg->size(), (long long)params, double(params) * 4 / 1048576.0,
                    ddp ? ddp->bucket_layout().size() : size_t(0), v[0], v[1]);
        std::fflush(stdout);
      }
      return v[0];
    };
    std::string only = flags.str("only");
    if (!only.empty()) {
      const char* names[] = {"compute", "ddp", "serial"};
      auto it = std::find(std::begin(names), std::end(names), only);
      if (it == std::end(names)) flags.fail("--only must be compute, ddp or serial");
      run(*it, int(it - std::begin(names)));
      return 0;
    }
    double compute = run("compute", 0), overlapped = run("ddp", 1), serial = run("serial", 2);
    double exposed = serial - compute;
    if (info.rank == 0)
      std::printf("{\"bench\":\"ddp_overlap\",\"variant\":\"summary\",\"compute_ms\":%.2f,\"ddp_ms\":%.2f,"
                  "\"serial_ms\":%.2f,\"hidden_fraction\":%.3f}\n",
                  compute, overlapped, serial, exposed > 0 ? (serial - overlapped) / exposed : 0.0);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_ddp_overlap: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
