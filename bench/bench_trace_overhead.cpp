// What the timeline recorder (core/trace.h) costs a training step. The fashion_mnist step (MLP
// 784-512-512-10, global batch 128, AdamW, DDP under mpirun) with the example's spans, in
// alternating blocks with recording off and on (so drift on a busy machine hits both alike).
// Prints JSON lines (rank 0):
//   {"bench":"trace_overhead","variant":"step", "off_ms", "on_ms", "overhead_pct", "spans_per_step"}
//   {"bench":"trace_overhead","variant":"record", "ns_per_span", "ns_per_disabled_scope",
//    "estimated_pct"}: the per-span cost times the spans of a step, over the step time: the
//    figure a noisy machine measures best; overhead_pct is the direct but noisier difference.
//   {"bench":"trace_overhead","variant":"export", "spans", "ms"}: turning a full ring into JSON.
//   mpirun -np 2 ./build/bench/bench_trace_overhead
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "fathom/comm/flags.h"
#include <fathom.h>

using namespace fathom;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags("bench_trace_overhead", "The cost of recording a timeline, per training step.");
  flags.add("batch", "128", "global batch, split over the ranks")
      .add("blocks", "10", "blocks per setting (off and on alternate)")
      .add("steps", "10", "steps per block")
      .add("spans", "1000000", "record() calls timed for the per-span cost");
  flags.parse(argc, argv);
  try {
    const comm::InitInfo& info = comm::init();
    int64_t batch = flags.positive_i64("batch") / info.world_size;
    int64_t blocks = flags.positive_i64("blocks"), steps = flags.positive_i64("steps");
    Generator gen(1);
    auto model = std::make_shared<nn::Sequential>(nn::Linear(784, 512, &gen), nn::ReLU(),
                                                  nn::Linear(512, 512, &gen), nn::ReLU(),
                                                  nn::Linear(512, 10, &gen));
    parallel::DistributedDataParallel ddp(model, info.world);
    optim::AdamW opt(model->named_parameters());
    ddp.attach(opt);
    Tensor images = randn({batch, 784}, kFloat32, &gen);
    Tensor labels = ops::to(ops::to(uniform({batch}, 0, 10, kFloat32, &gen), kInt64), Device::cpu());

    int64_t step_no = 0;
    auto step = [&] {  // the example's step with its spans
      trace::Scope s("train", "step", "step", ++step_no);
      Tensor x, y, loss;
      {
        trace::Scope d("train", "data");
        x = ops::contiguous(images);
        y = labels;
      }
      opt.zero_grad();
      {
        trace::Scope f("train", "forward");
        loss = cross_entropy(ddp.forward(x), y);
      }
      loss.backward();
      {
        trace::Scope o("train", "optimizer");
        opt.step();
      }
      loss.item<double>();
    };
    for (int i = 0; i < 5; ++i) step();  // warm-up: buckets rebuilt, allocations settled

    std::vector<double> off, on;
    size_t spans_per_step = 0;
    for (int64_t b = 0; b < 2 * blocks; ++b) {
      bool record = b % 2 == 1;
      if (record) trace::start();
      for (int64_t s = 0; s < steps; ++s) {
        info.world->barrier()->wait();  // every rank starts the step together
        auto t0 = Clock::now();
        step();
        (record ? on : off).push_back(ms_since(t0));
      }
      if (record) {
        trace::stop();
        // Barriers are the benchmark's, not the step's: count the rest.
        size_t n = 0;
        for (const trace::Span& sp : trace::snapshot().spans) n += std::string(sp.name) != "barrier";
        spans_per_step = n / size_t(steps);
      }
    }
    Tensor t = from_vector(std::vector<double>{median(off), median(on)}, {2});
    info.world->allreduce(t, comm::ReduceOp::max)->wait();
    double off_ms = to_vector(t)[0], on_ms = to_vector(t)[1];

    // The recorder alone: a span with three arguments on a track, as comm records them.
    int64_t n = flags.positive_i64("spans");
    trace::start(size_t(1) << 16);
    auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i)
      trace::record("comm", "allreduce", i, i + 1, {{"group", "world"}, {"seq", i}, {"bytes", uint64_t(4096)}}, "comm world");
    double ns_span = ms_since(t0) * 1e6 / double(n);
    trace::stop();
    t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) trace::Scope s("train", "off");
    double ns_off = ms_since(t0) * 1e6 / double(n);

    trace::start(size_t(1) << 16);
    for (int64_t i = 0; i < (int64_t(1) << 16); ++i) trace::record("train", "forward", i, i + 3, {{"step", i}});
    trace::stop();
    t0 = Clock::now();
    std::string json = logging::chrome_trace_document({logging::chrome_trace_events(trace::snapshot(), 0, 0)});
    double export_ms = ms_since(t0);

    if (info.rank == 0) {
      std::printf("{\"bench\":\"trace_overhead\",\"variant\":\"step\",\"ranks\":%d,\"batch\":%lld,"
                  "\"off_ms\":%.3f,\"on_ms\":%.3f,\"overhead_pct\":%.2f,\"spans_per_step\":%zu}\n",
                  info.world_size, (long long)(batch * info.world_size), off_ms, on_ms,
                  100 * (on_ms - off_ms) / off_ms, spans_per_step);
      std::printf("{\"bench\":\"trace_overhead\",\"variant\":\"record\",\"ns_per_span\":%.1f,"
                  "\"ns_per_disabled_scope\":%.2f,\"estimated_pct\":%.4f}\n",
                  ns_span, ns_off, 100 * double(spans_per_step) * ns_span / (off_ms * 1e6));
      std::printf("{\"bench\":\"trace_overhead\",\"variant\":\"export\",\"spans\":%d,\"bytes\":%zu,\"ms\":%.1f}\n",
                  1 << 16, json.size(), export_ms);
      std::fflush(stdout);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_trace_overhead: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
