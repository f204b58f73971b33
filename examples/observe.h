#pragma once
// Watching a run, for the example programs: progress lines with MFU, elapsed time and ETA; a
// final summary; set-up steps that say what they do; a non-finite loss or gradient norm
// reported at once with its step (--stop-on-nonfinite ends the run there); TensorBoard scalars
// (--tensorboard DIR); a Chrome trace timeline of every rank merged into one file (--profile).
//
//   examples::Observer::add_flags(flags);
//   examples::Observer obs(flags, *info.world, talk, "fashion_mnist");
//   auto data = obs.setup("loading Fashion-MNIST", [&] { return load(); });
//   obs.begin(first_step, total, flops_per_step, items_per_step, "samples");
//   loop: { trace::Scope s("train", "forward"); ... }  obs.step(step, loss, norm, scaled, &ddp.last_step());
//         at a progress line: printf("...%s\n", obs.interval(step, loss, lr, scaler).c_str());
//   obs.finish(step);   // collective: summary, merged trace
//
// docs/observability.md describes the flags, the scalars' tags and the timeline's rows.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "fathom/comm/flags.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/matmul.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/trace.h"
#include "fathom/log/log.h"
#include "fathom/nn/module.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/parallel/ddp.h"

namespace fathom::examples {

// A phase of the training step on the host's row of the timeline and, when `dev` is a GPU, as
// the device ran it (trace::DeviceScope on its compute stream).
struct Phase {
  Phase(const char* name, const Device& dev) : host("train", name), device("cuda", name, dev) {}
  trace::Scope host;
  trace::DeviceScope device;
};

// Training FLOPs per item of a model whose work is its matrix products: every 2-D parameter
// ("*.weight" of a Linear, a tied embedding used as the output layer) costs 2 * numel FLOPs per
// item forward and twice that backward (gradients of the input and of the weight): 6 * numel.
// Parameters named in `skip` take part in no product (a position embedding is a lookup).
inline double matmul_train_flops_per_item(const nn::Module& m, const std::vector<std::string>& skip = {}) {
  double n = 0;
  for (auto& [name, t] : m.named_parameters())
    if (t.dim() == 2 && std::find(skip.begin(), skip.end(), name) == skip.end()) n += double(t.numel());
  return 6 * n;
}

class Observer {
 public:
  static void add_flags(Flags& f) {
    f.add("tensorboard", "", "write TensorBoard event files (loss, lr, throughput, MFU, ...) to DIR")
        .add("tensorboard-all-ranks", "false", "with --tensorboard: every rank writes, to DIR/rank<R>")
        .add("profile", "", "write a Chrome trace (Perfetto, chrome://tracing) of every rank to FILE")
        .add("profile-spans", "65536", "with --profile: spans kept per rank (the newest, in a ring)")
        .add("peak-tflops", "0", "peak TFLOP/s per rank for MFU (0: measure a matmul at start-up)")
        .add("stop-on-nonfinite", "false", "end the run with an error at the first non-finite loss or gradient norm");
  }

  Observer(const Flags& f, comm::ProcessGroup& world, bool talk, std::string program)
      : world_(world), talk_(talk), program_(std::move(program)), profile_(f.str("profile")),
        peak_flops_(f.nonneg_f64("peak-tflops") * 1e12), stop_on_nonfinite_(f.boolean("stop-on-nonfinite")) {
    if (!profile_.empty()) {
      trace::name_this_thread("main");
      trace::start(size_t(f.positive_i64("profile-spans")));
      // A failing job cannot gather the ranks' spans: each rank writes its own file instead,
      // a trace of the steps up to the failure (and, for a hang, of where each rank waits).
      // The hook holds only values: an exception unwinding past this object (on its way to the
      // catch that calls comm::abort) leaves the hook registered, see ~Observer.
      failure_trace_ = std::make_unique<comm::FailureHook>(
          [path = profile_ + ".rank" + std::to_string(world.rank()) + ".json", rank = world.rank()] {
            write_own_profile(path, rank);
          });
    }
    const std::string& dir = f.str("tensorboard");
    bool all = f.boolean("tensorboard-all-ranks");
    if (all && dir.empty()) f.fail("--tensorboard-all-ranks needs --tensorboard DIR");
    if (!dir.empty() && (all || world.rank() == 0))
      tb_ = std::make_unique<logging::EventWriter>(all ? dir + "/rank" + std::to_string(world.rank()) : dir);
  }

  // Destroyed by an exception that is on its way to comm::abort: the failure-trace hook
  // stays registered (it holds no pointer into this object) so that abort still writes it.
  ~Observer() {
    if (std::uncaught_exceptions() > exceptions_at_start_) (void)failure_trace_.release();
  }
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // Runs one set-up step, saying what it does before ("gpt: reading the corpus X ...") and how
  // long it took after ("gpt: ... done in 0.21 s"). Whole lines: mpirun --tag-output (and
  // fathomrun) tag each write, so a line finished later would arrive split.
  template <class Fn>
  auto setup(const std::string& what, Fn&& fn) -> decltype(fn()) {
    auto t0 = Clock::now();
    say("%s: %s ...\n", program_.c_str(), what.c_str());
    trace::Scope span("setup", what);
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      say("%s: ... done in %.2f s\n", program_.c_str(), seconds(t0));
    } else {
      auto r = fn();
      say("%s: ... done in %.2f s\n", program_.c_str(), seconds(t0));
      return r;
    }
  }

  // Before the first step: where the run starts, its length, and the work of one step over
  // all ranks (FLOPs, items: samples or tokens). Measures the peak when none was given.
  void begin(int64_t first_step, int64_t total_steps, double flops_per_step, double items_per_step,
             std::string unit, Device dev, DType dt) {
    first_ = last_step_ = interval_from_ = first_step;
    total_ = total_steps;
    flops_per_step_ = flops_per_step;
    items_per_step_ = items_per_step;
    unit_ = std::move(unit);
    on_device_ = dev.is_cuda();
    if (peak_flops_ <= 0) {
      int64_t n = dev.is_cuda() ? 4096 : 512;
      setup("measuring the peak for MFU (" + std::to_string(n) + "^3 " + dtype_name(dt) + " matmul on " + dev.str() + ")",
            [&] { peak_flops_ = measure_peak(dev, dt, n); });
      say("%s: MFU is against %.1f GFLOP/s per rank, measured (--peak-tflops gives the hardware's)\n",
          program_.c_str(), peak_flops_ / 1e9);
    }
    // The device's peak counts from the first step: set-up (the MFU matmul) is not training.
    if (on_device_) memory::reset_peak(DeviceType::CUDA);
    t_begin_ = t_interval_ = Clock::now();
  }

  // After each step (`step` steps done). `norm_may_be_inf`: a dynamic loss scaler skips such
  // steps by design, so only a non-finite loss counts then.
  void step(int64_t step, double loss, double grad_norm, bool norm_may_be_inf,
            const parallel::DDPStepStats* ddp = nullptr) {
    last_step_ = step;
    bool bad_loss = !std::isfinite(loss), bad_norm = !norm_may_be_inf && !std::isfinite(grad_norm);
    if (bad_loss || bad_norm) {
      std::string what = bad_loss ? "loss is " + num(loss) : "gradient norm is " + num(grad_norm);
      if (stop_on_nonfinite_)
        throw Error("step " + std::to_string(step) + ": " + what +
                    " (non-finite); stopping as --stop-on-nonfinite asks");
      if (nonfinite_steps_++ == 0) {
        first_nonfinite_ = step;
        // Every rank that sees one says so (a rank's own loss can go first), tagged when several run.
        std::string who = world_.size() > 1 ? "[rank " + std::to_string(world_.rank()) + "] " : "";
        std::printf("%s%s: warning: step %lld: %s (non-finite): training has diverged; lower --lr, or "
                    "pass --stop-on-nonfinite to end the run at the first one\n",
                    who.c_str(), program_.c_str(), (long long)step, what.c_str());
        std::fflush(stdout);
      }
    }
    if (ddp) {
      bytes_ += double(ddp->bytes_sent);
      bytes_plain_ += double(ddp->bytes_uncompressed);
      ++ddp_steps_;
      // Busy: the union of the buckets' launch-to-done intervals; exposed: what the step waited
      // after its last gradient was ready.
      std::vector<std::pair<double, double>> iv;
      for (const auto& b : ddp->buckets) iv.push_back({b.launch_us, b.done_us});
      std::sort(iv.begin(), iv.end());
      double end = -1;
      for (auto [a, b] : iv) {
        if (a > end) comm_busy_s_ += (b - a) / 1e6, end = b;
        else if (b > end) comm_busy_s_ += (b - end) / 1e6, end = b;
      }
      comm_exposed_s_ += std::max(0.0, ddp->sync_end_us - ddp->backward_end_us) / 1e6;
    }
  }

  // A metric for the summary (best and final) and, unless already written, TensorBoard:
  // ("epoch/test_acc", 0.88, step, true).
  void metric(const std::string& tag, double value, int64_t step, bool higher_is_better, bool write = true) {
    Best& b = best_[tag];
    b.final = value;
    if (std::isfinite(value) && (!b.seen || (higher_is_better ? value > b.best : value < b.best))) {
      b.best = value;
      b.step = step;
      b.seen = true;
    }
    if (tb_ && write) tb_->add_scalar(step, tag, value);
  }

  // At a progress line (`step` steps done): writes the printed loss, the lr, the scaler's
  // gradient norm (and loss scale and skipped steps when it scales), the interval's throughput,
  // MFU and bytes to TensorBoard; returns the line's tail "  mfu 1.2%  elapsed 0:12  eta 1:05".
  std::string interval(int64_t step, double loss, double lr, const optim::GradScaler& scaler) {
    std::vector<logging::Scalar> scalars = {{"train/loss", loss}, {"train/lr", lr},
                                            {"train/grad_norm", scaler.last_grad_norm()}};
    if (scaler.is_enabled()) {
      scalars.push_back({"amp/loss_scale", scaler.get_scale()});
      scalars.push_back({"amp/skipped_steps", double(scaler.skipped_steps())});
    }
    double dt = seconds(t_interval_), n = double(step - interval_from_);
    double per_s = dt > 0 ? n * items_per_step_ / dt : 0;
    double mfu = dt > 0 ? n * flops_per_step_ / dt / (peak_flops_ * world_.size()) : 0;
    t_interval_ = Clock::now();
    interval_from_ = step;
    scalars.push_back({"perf/" + unit_ + "_per_s", per_s});
    scalars.push_back({"perf/mfu", mfu});
    scalars.push_back({"memory/peak_rss_mb", peak_rss_mb()});
    if (on_device_) scalars.push_back({"memory/device_peak_mb", device_peak_mb()});
    if (ddp_steps_ > 0) {
      scalars.push_back({"comm/bytes_per_step", bytes_ / double(ddp_steps_)});
      scalars.push_back({"comm/compression_ratio", bytes_plain_ / std::max(bytes_, 1.0)});
    }
    if (tb_) tb_->add_scalars(step, scalars);
    double elapsed = seconds(t_begin_), done = double(step - first_);
    std::string eta = done > 0 ? clock_time(elapsed / done * double(total_ - step)) : "?";
    char buf[160];
    std::snprintf(buf, sizeof buf, "  mfu %.2f%%  elapsed %s  eta %s", 100 * mfu,
                  clock_time(elapsed).c_str(), eta.c_str());
    return buf;
  }

  // Collective, at the end of the run (also when a stop signal ends it early): the summary, and
  // the merged trace written by rank 0.
  void finish() {
    double total_s = seconds(t_begin_), steps = double(last_step_ - first_);
    if (talk_) {
      std::printf("summary: %lld steps in %s (%.2f steps/s)", (long long)(last_step_ - first_),
                  clock_time(total_s).c_str(), total_s > 0 ? steps / total_s : 0.0);
      if (total_s > 0 && steps > 0)
        std::printf(", %.0f %s/s, mfu %.2f%%", steps * items_per_step_ / total_s, unit_.c_str(),
                    100 * steps * flops_per_step_ / total_s / (peak_flops_ * world_.size()));
      std::printf(", peak host memory %.0f MB", peak_rss_mb());
      if (on_device_) std::printf(", peak device memory %.0f MB", device_peak_mb());
      std::printf("\n");
      for (auto& [tag, b] : best_) {
        std::printf("summary: %s final %.4f", tag.c_str(), b.final);
        if (b.seen) std::printf(", best %.4f (step %lld)\n", b.best, (long long)b.step);
        else std::printf(", never finite\n");
      }
      if (ddp_steps_ > 0)
        std::printf("summary: communication %.2f s busy (%.1f%% of the run, overlapped with compute), "
                    "%.2f s exposed (steps waiting for it), %.0f bytes/step\n", comm_busy_s_,
                    100 * comm_busy_s_ / std::max(total_s, 1e-9), comm_exposed_s_, bytes_ / double(ddp_steps_));
      if (nonfinite_steps_ > 0)
        std::printf("summary: non-finite loss or gradient norm in %lld steps (first at step %lld)\n",
                    (long long)nonfinite_steps_, (long long)first_nonfinite_);
      std::fflush(stdout);
    }
    if (!profile_.empty()) {
      write_profile();
      failure_trace_.reset();  // merged: a failure from here on has no spans to add
    }
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Best {
    bool seen = false;
    double best = 0, final = 0;
    int64_t step = 0;
  };

  template <class... A>
  void say(const char* fmt, A... a) const {
    if (!talk_) return;
    std::printf(fmt, a...);
    std::fflush(stdout);
  }
  static double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  // The process's peak resident set (host memory; device memory is the allocator's to report).
  static double peak_rss_mb() {
    rusage u{};
    return ::getrusage(RUSAGE_SELF, &u) == 0 ? double(u.ru_maxrss) / 1024.0 : 0.0;  // ru_maxrss: KiB
  }
  // The peak of live tensor bytes on CUDA devices since begin() (the memory ledger,
  // core/memory.h): what the caching allocator keeps reserved on top is not counted.
  static double device_peak_mb() { return double(memory::stats(DeviceType::CUDA).total.peak) / 1048576.0; }
  static std::string num(double v) { return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }
  // "0:07", "12:34", "1:02:03"
  static std::string clock_time(double s) {
    long t = long(std::max(0.0, s) + 0.5);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
  }

  // FLOP/s of a square matmul in the model's dtype: the best of five after a warm-up. Its own
  // generator, so the run's random streams are those of a run that measures nothing.
  static double measure_peak(Device dev, DType dt, int64_t n) {
    Generator gen(0);
    Tensor a = ops::to(ops::to(randn({n, n}, kFloat32, &gen), dev), dt);
    Tensor b = ops::to(ops::to(randn({n, n}, kFloat32, &gen), dev), dt);
    double best = 1e30;
    for (int k = 0; k < 6; ++k) {
      auto t0 = Clock::now();
      Tensor c = ops::matmul(a, b);
      ops::to(ops::narrow(ops::view(c, {n * n}), 0, 0, 1), Device::cpu());  // waits for a GPU
      if (k > 0) best = std::min(best, seconds(t0));
    }
    return 2.0 * double(n) * double(n) * double(n) / best;
  }

  // Every rank's spans, on one clock origin (the earliest span of any rank), gathered on rank 0
  // over the world group (no shared file system needed) and written as one document.
  void write_profile() {
    trace::stop();
    trace::Snapshot snap = trace::snapshot();
    Tensor origin = from_vector(std::vector<int64_t>{logging::earliest_begin(snap)}, {1});
    world_.allreduce(origin, comm::ReduceOp::min)->wait();
    std::string mine = logging::chrome_trace_events(snap, world_.rank(), origin.item<int64_t>());
    const int ranks = world_.size();
    Tensor len = from_vector(std::vector<int64_t>{int64_t(mine.size())}, {1});
    Tensor lens = empty({int64_t(ranks)}, {DType::i64});
    world_.allgather(lens, len)->wait();
    std::vector<std::string> all(static_cast<size_t>(ranks));
    all[0] = mine;
    for (int r = 1; r < ranks; ++r) {
      int64_t n = lens.data<int64_t>()[r];
      if (n == 0) continue;
      if (world_.rank() == r) {
        Tensor t = empty({n}, {DType::u8});
        std::memcpy(t.data_ptr(), mine.data(), size_t(n));
        world_.send(t, 0)->wait();
      } else if (world_.rank() == 0) {
        Tensor t = empty({n}, {DType::u8});
        world_.recv(t, r)->wait();
        all[size_t(r)].assign(static_cast<const char*>(t.data_ptr()), size_t(n));
      }
    }
    if (world_.rank() != 0) return;
    logging::write_text_file(profile_, logging::chrome_trace_document(all));
    std::printf("profile: %d rank(s) written to %s (%lld spans on rank 0%s); open it in ui.perfetto.dev or "
                "chrome://tracing\n", ranks, profile_.c_str(), (long long)snap.spans.size(),
                snap.dropped ? ", whose ring was full: the oldest are dropped" : "");
    std::fflush(stdout);
  }

  // FILE.rank<R>.json: this rank's spans alone, a document of its own.
  static void write_own_profile(const std::string& path, int rank) {
    trace::stop();
    trace::Snapshot snap = trace::snapshot();
    logging::write_text_file(path, logging::chrome_trace_document(
        {logging::chrome_trace_events(snap, rank, logging::earliest_begin(snap))}));
    std::fprintf(stderr, "[rank %d] profile: the run failed, so this rank's %lld spans went to %s "
                 "(not merged with the other ranks')\n", rank, (long long)snap.spans.size(), path.c_str());
  }

  comm::ProcessGroup& world_;
  bool talk_;
  std::string program_, profile_;
  double peak_flops_;
  bool on_device_ = false;
  bool stop_on_nonfinite_;
  std::unique_ptr<logging::EventWriter> tb_;
  Clock::time_point t_begin_, t_interval_;
  int64_t first_ = 0, last_step_ = 0, total_ = 0, interval_from_ = 0;
  double flops_per_step_ = 0, items_per_step_ = 0;
  std::string unit_ = "samples";
  double bytes_ = 0, bytes_plain_ = 0, comm_busy_s_ = 0, comm_exposed_s_ = 0;
  int64_t ddp_steps_ = 0, nonfinite_steps_ = 0, first_nonfinite_ = 0;
  std::map<std::string, Best> best_;
  std::unique_ptr<comm::FailureHook> failure_trace_;
  int exceptions_at_start_ = std::uncaught_exceptions();
};

}  // namespace fathom::examples
