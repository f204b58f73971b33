#pragma once
// examples/gpt's training loop over a 3D mesh (--dp --tp --pp, or --micro-batches > 1 on one
// process): parallel::GPT3D (docs/parallel.md). Every rank draws the same global batch of B
// sequences and takes its dp slice, cut into m micro-batches of B / (dp m); the loss it prints
// (world rank 0 only) is the global batch's mean, so the lines match the one-process run's up
// to rounding. At the end the dense model is gathered on rank 0, which prints its hash, writes
// --save-model and samples from it. --checkpoint-dir saves each rank's own shard: its stage's
// parameters and optimizer state (per (pp, tp), the same on every dp rank), its DDPs' state,
// under per-rank keys; a resume needs the same mesh (another one is an error naming the
// missing or mis-shaped keys).
#include <chrono>
#include <cstdio>
#include <string>

#include "examples/checkpointing.h"
#include "examples/observe.h"
#include "fathom/comm/flags.h"
#include "fathom/data/text.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/scheduler.h"
#include "fathom/parallel/gpt_3d.h"

namespace fathom::examples {

// A rank's stage for the checkpoint: its parameters ("model.<name>") and its optimizer's state
// ("optim.<key>"), both this rank's own shard, so per rank.
inline checkpoint::StateProvider stage_provider(parallel::GPT3D& model, optim::Optimizer& opt) {
  auto split = [](const nn::StateDict& s, const std::string& prefix) {
    nn::StateDict out;
    for (auto& [k, v] : s)
      if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
    return out;
  };
  checkpoint::StateProvider p;
  p.name = "stage";
  p.save = [&model, &opt] {
    nn::StateDict s;
    for (auto& [name, t] : model.named_parameters()) s["model." + name] = t;
    for (auto& [k, v] : opt.state_dict()) s["optim." + k] = v;
    return s;
  };
  p.check = [&model, &opt, split](const nn::StateDict& s) {
    nn::StateDict params = split(s, "model.");
    std::string problems;
    for (auto& [name, t] : model.named_parameters()) {
      auto it = params.find(name);
      if (it == params.end()) problems += "\n  missing model." + name;
      else if (it->second.shape() != t.shape() || it->second.dtype() != t.dtype())
        problems += "\n  model." + name + " is " + it->second.desc() + ", this rank's is " + t.desc();
    }
    if (params.size() != model.named_parameters().size())
      problems += "\n  the checkpoint holds " + std::to_string(params.size()) +
                  " parameters for this rank, its stage " + std::to_string(model.named_parameters().size());
    FATHOM_CHECK(problems.empty(), "gpt: the checkpoint's stage does not fit ", model.mesh().str(),
                 " (resume with the mesh it was saved with):", problems);
    opt.check_state_dict(split(s, "optim."));
  };
  p.load = [&model, &opt, split](const nn::StateDict& s) {
    nn::StateDict params = split(s, "model.");
    {
      NoGradGuard no_grad;
      for (auto& [name, t] : model.named_parameters()) ops::copy_(t, params.at(name));
    }
    opt.load_state_dict(split(s, "optim."));
  };
  return p;
}

struct Train3D {
  nn::GPTConfig cfg;
  int dp = 1, tp = 1, pp = 1, micro = 1, virtual_stages = 1;
  parallel::ScheduleKind schedule = parallel::ScheduleKind::one_f_one_b;
  std::string config_name;
  int64_t steps = 0, log_every = 1, B = 0, warmup = 0, sample = 0;
  double lr = 0, clip = 0;
  DType dt = DType::f32;
  Device dev = Device::cpu();
};

// Returns the exit status. `printable` turns sampled tokens into text.
inline int train_3d(const Flags& flags, const Train3D& a, comm::ProcessGroup& world, Observer& obs,
                    data::TextDataset& text, Generator& init_gen, Generator& batch_gen,
                    Generator& sample_gen, std::string (*printable)(const std::vector<double>&, size_t)) {
  bool talk = world.rank() == 0;
  int64_t T = a.cfg.block_size;
  if (a.B % (int64_t(a.dp) * a.micro) != 0)
    flags.fail("the batch " + std::to_string(a.B) + " must be a multiple of --dp x --micro-batches = " +
               std::to_string(a.dp) + " x " + std::to_string(a.micro));
  int64_t b = a.B / (int64_t(a.dp) * a.micro);
  parallel::Mesh mesh(world, a.dp, a.pp, a.tp);
  auto model = obs.setup("building the stages (" + mesh.str() + ")", [&] {
    return std::make_unique<parallel::GPT3D>(
        a.cfg, mesh, parallel::GPT3DOptions().schedule(a.schedule).microbatches(a.micro)
                         .virtual_stages(a.virtual_stages).microbatch_size(b).seq_len(T)
                         .dtype(a.dt).device(a.dev), init_gen);
  });
  Generator scratch(0);
  nn::GPT dense(a.cfg, &scratch);  // the whole model's names, shapes and FLOPs
  // As the one-process run: matrices and embeddings decay, biases and LayerNorm weights do not.
  optim::NamedParams decay, no_decay;
  for (auto& [name, t] : model->named_parameters()) (t.dim() >= 2 ? decay : no_decay).push_back({name, t});
  parallel::MeshOptimizer<optim::AdamW> opt(
      {optim::ParamGroup(decay), optim::ParamGroup(no_decay, optim::AdamWOptions().weight_decay(0))},
      optim::AdamWOptions(a.lr).weight_decay(0.1), model->mesh_norm());
  optim::GradScaler scaler(optim::GradScalerOptions().enabled(a.dt == DType::f16));
  optim::CosineLR sched(opt, std::min(a.warmup, a.steps - 1), a.steps, a.lr / 10);
  if (talk) {
    std::printf("gpt: %s, %lld parameters, B=%lld T=%lld, %s on %s, corpus '%s' (%lld bytes, "
                "unigram entropy %.3f nats)\n", a.config_name.c_str(),
                (long long)dense.num_parameters(), (long long)a.B, (long long)T, dtype_name(a.dt),
                a.dev.str().c_str(), flags.str("data").c_str(), (long long)text.size(),
                text.unigram_entropy());
    std::printf("gpt: mesh dp=%d tp=%d pp=%d, schedule %s, %d micro-batch(es) of %lld, %d "
                "virtual stage(s) per rank\n", a.dp, a.tp, a.pp, parallel::schedule_name(a.schedule),
                a.micro, (long long)b, a.virtual_stages);
  }
  double tokens = double(a.B * T);
  double flops = matmul_train_flops_per_item(dense, {"wpe.weight"}) * tokens +
                 12.0 * double(a.cfg.n_layer * T * a.cfg.n_embd) * tokens;
  // The loss window is part of the state, so a resumed run prints the uninterrupted run's lines.
  double window = 0;
  checkpoint::TrainState ts;
  ts.scaler = &scaler;
  ts.scheduler = &sched;
  ts.generators["batch"] = &batch_gen;
  ts.extras.push_back(scalars_provider("loop", {{"window", &window}}));
  ts.extras.push_back(stage_provider(*model, opt));
  for (int c = 0; c < a.virtual_stages && model->ddp(0); ++c)
    ts.extras.push_back(checkpoint::per_rank_provider("ddp" + std::to_string(c), *model->ddp(c)));
  Checkpointing ckpt(flags, world, ts, talk);
  int64_t step = ckpt.resume(), timed_from = step;
  obs.begin(step, a.steps, flops, tokens, "tokens", a.dev, a.dt);
  auto t0 = std::chrono::steady_clock::now();
  bool first = mesh.pp_rank() == 0, last = mesh.pp_rank() == mesh.pp() - 1;
  while (step < a.steps) {
    trace::Scope step_span("train", "step", "step", step + 1);
    std::vector<Tensor> xs, ys;
    {
      trace::Scope span("train", "data");
      auto [bx, by] = text.batch(a.B, T, batch_gen);  // the same draws on every rank
      for (int i = 0; i < a.micro; ++i) {
        int64_t row = (int64_t(mesh.dp_rank()) * a.micro + i) * b;
        if (first) xs.push_back(ops::contiguous(ops::narrow(bx, 0, row, b)).to(a.dev));
        if (last) ys.push_back(ops::contiguous(ops::narrow(by, 0, row, b)).to(a.dev));
      }
    }
    opt.zero_grad();
    double l = model->forward_backward(xs, ys, scaler.get_scale());
    {
      trace::Scope span("train", "optimizer");
      scaler.step(opt, a.clip);
    }
    window += l;
    ++step;
    obs.step(step, l, scaler.last_grad_norm(), scaler.is_enabled());
    if (step % a.log_every == 0 || step == a.steps) {
      int64_t n = step % a.log_every ? step % a.log_every : a.log_every;
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double wl = window / double(n), lr_now = sched.last_lr()[0];
      std::string extra = obs.interval(step, wl, lr_now, scaler);
      if (talk) {
        std::printf("step %5lld/%lld  loss %.4f  lr %.2e  norm %.3f  %.0f tokens/s%s\n",
                    (long long)step, (long long)a.steps, wl, lr_now, scaler.last_grad_norm(),
                    double(std::min(n, step - timed_from) * a.B * T) / s, extra.c_str());
        std::fflush(stdout);
      }
      obs.metric("train/loss", wl, step, false, /*write=*/false);
      window = 0;
      t0 = std::chrono::steady_clock::now();
      timed_from = step;
    }
    sched.step();
    if (ckpt.after_step(step, step == a.steps)) {
      obs.finish();
      return 0;
    }
  }
  nn::StateDict full = model->full_state_dict_on_root();  // collective over the mesh
  obs.finish();
  if (flags.boolean("memory") && talk) std::printf("%s", memory::report(a.dev.type).c_str());
  dense.to(a.dev);
  dense.to(a.dt);
  if (talk) {
    NoGradGuard no_grad;
    for (auto& [name, t] : dense.named_parameters()) ops::copy_(t, full.at(name));
  }
  // Collective (the last save); rank 0 prints the hash and writes --save-model.
  ckpt.finish(dense, {{"model", "gpt " + a.config_name}, {"dtype", dtype_name(a.dt)}});
  if (!talk) return 0;
  if (a.sample > 0) {
    Tensor idx = ops::to(from_vector(std::vector<int64_t>{'\n'}, {1, 1}), a.dev);
    Tensor out = dense.generate(idx, a.sample, 0.8, &sample_gen);
    std::printf("--- sample ---\n%s\n--------------\n", printable(to_vector(out), 1).c_str());
  }
  return 0;
}

}  // namespace fathom::examples
