#pragma once
// Checkpoints for the example programs: --checkpoint-dir DIR resumes from the newest valid
// checkpoint in DIR and saves into it every --save-every steps (asynchronously) and after the
// last step; a stop signal (SLURM's USR1 before the time limit, SIGTERM) saves at a step every
// rank agrees on and ends the run cleanly; --save-model FILE writes the final weights as
// safetensors; every run ends with "final_param_hash=<16 hex>" so two runs compare in one line.
//
//   examples::Checkpointing::catch_stop_signals_early(argc, argv);  // first in main
//   examples::Checkpointing::add_flags(flags);
//   examples::Checkpointing ckpt(flags, *info.world, ts, talk);   // ts: checkpoint::TrainState
//   for (int64_t step = ckpt.resume(); step < total;) {
//     ...train one step...; ++step;
//     if (ckpt.after_step(step, step == total)) return 0;       // stopped by a signal
//   }
//   ckpt.finish(*model, {{"model", "..."}});
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "fathom/comm/flags.h"
#include "fathom/checkpoint/checkpointer.h"
#include "fathom/checkpoint/safetensors.h"
#include "fathom/checkpoint/train_state.h"
#include "fathom/comm/stop_signal.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/trace.h"

namespace fathom::examples {

// A training loop's own running numbers (loss sums, byte counters) as a per-rank part of its
// checkpoint: 0-dim f64 tensors under "<name>.<key>". On another world size each becomes the
// mean of the saved ranks' values, which keeps their mean over ranks (what the loop prints).
inline checkpoint::StateProvider scalars_provider(std::string name, std::map<std::string, double*> values) {
  checkpoint::StateProvider p;
  p.name = std::move(name);
  p.save = [values] {
    nn::StateDict s;
    for (auto& [k, v] : values) s[k] = from_vector(std::vector<double>{*v}, {}, DType::f64);
    return s;
  };
  p.check = [values, n = p.name](const nn::StateDict& s) {
    for (auto& [k, v] : values) {
      auto it = s.find(k);
      if (it == s.end() || it->second.dtype() != DType::f64 || it->second.numel() != 1)
        throw Error("checkpoint: '" + n + "." + k + "' is missing or not one f64 value");
    }
    if (s.size() != values.size()) throw Error("checkpoint: '" + n + "' holds unexpected entries");
  };
  p.load = [values](const nn::StateDict& s) {
    for (auto& [k, v] : values) *v = s.at(k).item<double>();
  };
  p.reshard = [values](int saved_world, const std::function<nn::StateDict(int)>& read) {
    std::map<std::string, double> sum;
    for (int r = 0; r < saved_world; ++r)
      for (auto& [k, t] : read(r)) sum[k] += t.item<double>();
    nn::StateDict s;
    for (auto& [k, v] : sum) s[k] = from_vector(std::vector<double>{v / double(saved_world)}, {}, DType::f64);
    return s;
  };
  return p;
}

class Checkpointing {
 public:
  static void add_flags(Flags& f) {
    f.add("checkpoint-dir", "", "save checkpoints in DIR and resume from the newest valid one there")
        .add("save-every", "0", "with --checkpoint-dir: save every N steps (0: only after the last step)")
        .add("save-model", "", "after training, write the model's weights to this .safetensors file");
  }

  // The first thing in main, before comm::init: with --checkpoint-dir, a stop signal is caught
  // from here on, not only once the checkpointer exists. SLURM's warning before the time limit
  // may come while the ranks start (it is sent up to a minute early, and a requeued job can get
  // it in its first second); uncaught, SIGUSR1 kills the ranks (srun: "User defined signal 1")
  // instead of stopping them at their first step with a checkpoint. argv is scanned as
  // Flags::parse reads it: "--checkpoint-dir DIR" or "--checkpoint-dir=DIR", the last one wins.
  static void catch_stop_signals_early(int argc, char** argv) {
    std::string dir;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--checkpoint-dir" && i + 1 < argc) dir = argv[++i];
      else if (a.rfind("--checkpoint-dir=", 0) == 0) dir = a.substr(17);
    }
    if (!dir.empty()) comm::install_stop_handler();
  }

  Checkpointing(const Flags& f, comm::ProcessGroup& world, checkpoint::TrainState& ts, bool talk)
      : world_(world), ts_(ts), talk_(talk), save_every_(f.nonneg_i64("save-every")),
        model_path_(f.str("save-model")) {
    const std::string& dir = f.str("checkpoint-dir");
    if (dir.empty()) {
      if (save_every_ > 0) f.fail("--save-every needs --checkpoint-dir");
      return;
    }
    ckpt_ = std::make_unique<checkpoint::Checkpointer>(dir, world);
    comm::install_stop_handler();
  }

  // Collective. Steps already trained by the run this one continues (0: a fresh start).
  int64_t resume() {
    if (!ckpt_) return 0;
    std::optional<checkpoint::Loaded> l = ckpt_->load_latest();
    if (!l) return 0;
    if (l->saved_world_size == world_.size()) {
      checkpoint::restore(ts_, l->replicated, l->per_rank);
    } else {
      checkpoint::restore_resharded(ts_, l->replicated, l->saved_world_size,
                                    [&](int r) { return ckpt_->load_rank_state(*l, r); });
    }
    if (talk_)
      std::printf("resumed from %s at step %lld (saved by %d rank(s))\n", l->path.c_str(),
                  (long long)l->step, l->saved_world_size);
    saved_step_ = l->step;
    return l->step;
  }

  // Collective, after each step (`done` steps trained in all). Saves when due; true when a
  // stop signal reached any rank: the state is then saved and the caller should end the run.
  bool after_step(int64_t done, bool last) {
    if (!ckpt_) return false;
    report_blocking();  // the previous save's figure is final once a step has run after it
    bool stop = comm::any_rank_stop_requested(world_);
    if (stop || last || (save_every_ > 0 && done % save_every_ == 0)) save(done);
    if (stop) {
      ckpt_->wait();
      report_blocking();
      if (talk_)
        std::printf("stopping at step %lld on signal %d: checkpoint saved in %s\n", (long long)done,
                    comm::stop_signal(), ckpt_->dir().c_str());
    }
    return stop;
  }

  // Collective. Waits for the last save, prints the final hash and writes --save-model.
  void finish(nn::Module& model, const std::map<std::string, std::string>& metadata) {
    if (ckpt_) {
      ckpt_->wait();
      report_blocking();
    }
    nn::StateDict params;
    for (auto& [name, t] : model.named_parameters()) params[name] = t;
    if (talk_) std::printf("final_param_hash=%016llx\n", (unsigned long long)checkpoint::state_hash(params));
    if (!model_path_.empty() && world_.rank() == 0) {
      checkpoint::save_safetensors(model_path_, model.state_dict(), metadata);
      if (talk_) std::printf("saved the model to %s\n", model_path_.c_str());
    }
    std::fflush(stdout);
  }

 private:
  void save(int64_t step) {
    if (step == saved_step_) return;
    trace::Scope span("checkpoint", "save", "step", step);  // the blocking part; writing is async
    ckpt_->save(step, checkpoint::collect(ts_));
    saved_step_ = step;
    unreported_ = step;
  }
  // Blocking = the save() call plus the next optimizer step's wait for its snapshot
  // (Checkpointer::last_save_blocking_seconds), so it is printed one step later.
  void report_blocking() {
    if (unreported_ < 0) return;
    if (talk_) {
      std::printf("checkpoint step %lld: training blocked %.1f ms\n", (long long)unreported_,
                  1e3 * ckpt_->last_save_blocking_seconds());
      std::fflush(stdout);
    }
    unreported_ = -1;
  }

  comm::ProcessGroup& world_;
  checkpoint::TrainState& ts_;
  bool talk_;
  int64_t save_every_;
  std::string model_path_;
  std::unique_ptr<checkpoint::Checkpointer> ckpt_;
  int64_t saved_step_ = -1;
  int64_t unreported_ = -1;  // a save whose blocking figure is not printed yet
};

}  // namespace fathom::examples
