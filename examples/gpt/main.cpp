// A character-level (byte-level) GPT trained on a text file: by default a corpus of quotations
// from Debian's `fortunes` package. Prints the loss, tokens/s and a generated sample.
//
//   ./build/examples/gpt --steps 2000 --config small
//   ./build/examples/gpt --steps 200 --tensorboard runs/gpt --profile gpt.trace.json
//   mpirun -np 8 ./build/examples/gpt --dp 2 --tp 2 --pp 2 --micro-batches 4   # 3D: train_3d.h
#include <chrono>
#include <cstdio>
#include <string>

#include "examples/checkpointing.h"
#include "examples/gpt/train_3d.h"
#include "examples/observe.h"
#include "fathom/comm/flags.h"
#include <fathom.h>
#include "fathom/data/text.h"
#include "fathom/optim/clip.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/scheduler.h"

using namespace fathom;

namespace {

struct Preset {
  int64_t n_layer, n_head, n_embd, block, batch;
};
// tiny and small match ../shared/anchors/torch_gpt_bench.py's configs.
Preset preset(const std::string& name, const examples::Flags& flags) {
  if (name == "tiny") return {4, 4, 128, 64, 16};
  if (name == "small") return {6, 6, 384, 256, 64};
  flags.fail("--config must be tiny or small, got '" + name + "'");
}

std::string printable(const std::vector<double>& tokens, size_t from) {
  std::string s;
  for (size_t i = from; i < tokens.size(); ++i) {
    int c = int(tokens[i]);
    s += (c == '\n' || c == '\t' || (c >= 32 && c < 127)) ? char(c) : '?';
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Checkpointing::catch_stop_signals_early(argc, argv);
  examples::Flags flags("gpt", "Trains a byte-level GPT on a text file and samples from it.");
  flags.add("data", data::kDefaultCorpus, "text file to train on (any bytes)")
      .add("config", "tiny", "model size: tiny (L4 H4 C128 T64 B16) or small (L6 H6 C384 T256 B64)")
      .add("steps", "1000", "training steps")
      .add("batch", "0", "batch size (0: the config's)")
      .add("lr", "1e-3", "peak learning rate (AdamW), cosine decay after warmup")
      .add("warmup", "100", "linear warmup steps")
      .add("clip", "1.0", "global gradient-norm clip (0: off)")
      .add("dropout", "0.0", "dropout probability")
      .add("seed", "0", "seed for initialisation, batches and sampling")
      .add("device", "cpu", "cpu or cuda[:N]")
      .add("dtype", "f32", "f32, bf16 or f16 (f16 uses dynamic loss scaling)")
      .add("log-every", "50", "print loss and tokens/s every N steps")
      .add("sample", "300", "bytes to generate at the end (0: none)")
      .add("recompute", "none", "activation recomputation: none, selective (attention's core) or full (each block)")
      .add("dp", "1", "data-parallel ranks (dp x tp x pp must be the number of ranks)")
      .add("tp", "1", "tensor-parallel ranks per pipeline stage")
      .add("pp", "1", "pipeline stages")
      .add("micro-batches", "1", "micro-batches per step and data-parallel rank (the pipeline's m)")
      .add("schedule", "1f1b", "pipeline schedule: gpipe, 1f1b, interleaved or zb (zb-h1: ZB-H1)")
      .add("virtual-stages", "1", "model chunks per pipeline rank (the interleaved schedule)")
      .add_switch("memory", "print the memory ledger (current and peak bytes by category) after training");
  examples::Checkpointing::add_flags(flags);
  examples::Observer::add_flags(flags);
  flags.parse(argc, argv);
  Preset p = preset(flags.str("config"), flags);
  int64_t steps = flags.positive_i64("steps");
  int64_t log_every = std::max<int64_t>(1, flags.nonneg_i64("log-every"));
  int64_t B = flags.nonneg_i64("batch") > 0 ? flags.i64("batch") : p.batch, T = p.block;
  int64_t warmup = flags.nonneg_i64("warmup"), sample = flags.nonneg_i64("sample");
  double lr = flags.positive_f64("lr"), clip = flags.nonneg_f64("clip");
  double dropout = flags.probability("dropout");
  DType dt = flags.model_dtype("dtype");
  Device dev = flags.device("device");
  nn::Recompute recompute = nn::Recompute::none;
  try {
    recompute = nn::parse_recompute(flags.str("recompute"));
  } catch (const Error& e) {
    flags.fail(e.what());
  }

  examples::Train3D run3d;
  run3d.dp = int(flags.positive_i64("dp")), run3d.tp = int(flags.positive_i64("tp"));
  run3d.pp = int(flags.positive_i64("pp")), run3d.micro = int(flags.positive_i64("micro-batches"));
  run3d.virtual_stages = int(flags.positive_i64("virtual-stages"));
  {
    std::string sch = flags.str("schedule");
    if (sch == "zb") sch = "zb-h1";
    try {
      run3d.schedule = parallel::parse_schedule(sch);
    } catch (const Error& e) {
      flags.fail(std::string("--schedule: ") + e.what());
    }
  }
  bool is_3d = run3d.dp * run3d.tp * run3d.pp > 1 || run3d.micro > 1 || run3d.virtual_stages > 1 ||
               run3d.schedule != parallel::ScheduleKind::one_f_one_b;

  try {
    // One process unless --dp/--tp/--pp say otherwise; the world group is what the
    // checkpointer coordinates over.
    const comm::InitInfo& info = comm::init();
    flags.check_same_on_all_ranks(*info.world, {"device", "data"});
    int mesh_size = run3d.dp * run3d.tp * run3d.pp;
    if (mesh_size != info.world->size())
      flags.fail("--dp " + std::to_string(run3d.dp) + " x --tp " + std::to_string(run3d.tp) +
                 " x --pp " + std::to_string(run3d.pp) + " = " + std::to_string(mesh_size) +
                 " ranks, but the run has " + std::to_string(info.world->size()) +
                 " (start it with mpirun -np " + std::to_string(mesh_size) + ")");
    examples::Observer obs(flags, *info.world, info.world->rank() == 0, "gpt");
    auto text = obs.setup("reading the corpus " + flags.str("data"),
                          [&] { return std::make_unique<data::TextDataset>(flags.str("data")); });
    uint64_t seed = uint64_t(flags.i64("seed"));
    Generator init_gen(seed, 0), batch_gen(seed, 1), sample_gen(seed, 2);
    nn::GPTConfig cfg{256, T, p.n_layer, p.n_head, p.n_embd, dropout, recompute};
    if (is_3d) {
      run3d.cfg = cfg, run3d.config_name = flags.str("config"), run3d.steps = steps;
      run3d.log_every = log_every, run3d.B = B, run3d.warmup = warmup, run3d.sample = sample;
      run3d.lr = lr, run3d.clip = clip, run3d.dt = dt, run3d.dev = dev;
      return examples::train_3d(flags, run3d, *info.world, obs, *text, init_gen, batch_gen, sample_gen,
                                printable);
    }
    auto model = obs.setup("building the model", [&] {
      auto m = std::make_shared<nn::GPT>(cfg, &init_gen);
      m->to(dev);
      m->to(dt);
      return m;
    });
    // As GPT-2/nanoGPT: matrices (and embeddings) decay; biases and LayerNorm weights (dim < 2) do not.
    optim::NamedParams decay, no_decay;
    for (auto& [name, t] : model->named_parameters()) (t.dim() >= 2 ? decay : no_decay).push_back({name, t});
    optim::AdamW opt({optim::ParamGroup(decay), optim::ParamGroup(no_decay, optim::AdamWOptions().weight_decay(0))},
                     optim::AdamWOptions(lr).weight_decay(0.1));
    optim::GradScaler scaler(optim::GradScalerOptions().enabled(dt == DType::f16));
    optim::CosineLR sched(opt, std::min(warmup, steps - 1), steps, lr / 10);
    std::printf("gpt: %s, %lld parameters, B=%lld T=%lld, %s on %s, corpus '%s' (%lld bytes, "
                "unigram entropy %.3f nats)\n", flags.str("config").c_str(),
                (long long)model->num_parameters(), (long long)B, (long long)T, dtype_name(dt),
                dev.str().c_str(), flags.str("data").c_str(), (long long)text->size(),
                text->unigram_entropy());

    // The loss window is part of the state, so a resumed run prints the uninterrupted run's lines.
    double window = 0;
    checkpoint::TrainState ts;
    ts.model = model.get();
    ts.optimizer = &opt;
    ts.scaler = &scaler;
    ts.scheduler = &sched;
    ts.generators["batch"] = &batch_gen;
    ts.extras.push_back(examples::scalars_provider("loop", {{"window", &window}}));
    examples::Checkpointing ckpt(flags, *info.world, ts, true);

    auto t0 = std::chrono::steady_clock::now();
    int64_t step = ckpt.resume(), timed_from = step;
    // Matrix products (the output layer is the tied token embedding; the position embedding is
    // a lookup), plus attention's two T x T products per layer: 12 * L * T * C per token
    // (forward and backward), as nanoGPT's estimate_mfu counts.
    double tokens = double(B * T);
    double flops = examples::matmul_train_flops_per_item(*model, {"wpe.weight"}) * tokens +
                   12.0 * double(p.n_layer * T * p.n_embd) * tokens;
    obs.begin(step, steps, flops, tokens, "tokens", dev, dt);
    while (step < steps) {
      trace::Scope step_span("train", "step", "step", step + 1);
      Tensor x, y, loss;
      {
        trace::Scope span("train", "data");
        auto [bx, by] = text->batch(B, T, batch_gen);
        x = bx.to(dev);
        y = by.to(dev);
      }
      opt.zero_grad();
      {
        examples::Phase span("forward", dev);
        loss = model->forward(x, y);
      }
      scaler.scale(loss).backward();  // the "backward" span is autograd's own
      {
        examples::Phase span("optimizer", dev);
        scaler.step(opt, clip);
      }
      double l = loss.item<double>();
      window += l;
      ++step;
      obs.step(step, l, scaler.last_grad_norm(), scaler.is_enabled());
      if (step % log_every == 0 || step == steps) {
        int64_t n = step % log_every ? step % log_every : log_every;
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double wl = window / double(n), lr_now = sched.last_lr()[0];
        std::printf("step %5lld/%lld  loss %.4f  lr %.2e  norm %.3f  %.0f tokens/s%s\n",
                    (long long)step, (long long)steps, wl, lr_now, scaler.last_grad_norm(),
                    double(std::min(n, step - timed_from) * B * T) / s,
                    obs.interval(step, wl, lr_now, scaler).c_str());
        obs.metric("train/loss", wl, step, false, /*write=*/false);
        std::fflush(stdout);
        window = 0;
        t0 = std::chrono::steady_clock::now();
        timed_from = step;
      }
      sched.step();
      if (ckpt.after_step(step, step == steps)) {
        obs.finish();
        return 0;
      }
    }
    ckpt.finish(*model, {{"model", "gpt " + flags.str("config")}, {"dtype", dtype_name(dt)}});
    obs.finish();
    if (flags.boolean("memory")) std::printf("%s", memory::report(dev.type).c_str());
    if (sample > 0) {
      std::string prompt = "\n";
      Tensor idx = ops::to(from_vector(std::vector<int64_t>{'\n'}, {1, 1}), dev);
      Tensor out = model->generate(idx, sample, 0.8, &sample_gen);
      std::printf("--- sample ---\n%s\n--------------\n", printable(to_vector(out), 1).c_str());
    }
  } catch (const std::exception& e) {
    // fathom::Error and anything else (std::bad_alloc, a std::ios_base::failure): one line and
    // exit 1, never an abort through std::terminate.
    std::fprintf(stderr, "gpt: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
