#pragma once
// A training loop's complete state, for a resume that is bitwise the run that was never
// interrupted: collect() gathers every part into a RankState (what the checkpointer writes),
// restore() puts it back into freshly constructed parts (what a restarted process builds).
//
//   checkpoint::TrainState ts;
//   ts.model = model.get(); ts.optimizer = &opt; ts.scheduler = &sched; ts.loader = &loader;
//   ts.generators["dropout"] = &dropout_gen;        // "default" (default_generator()) is in already
//   ts.extras.push_back(checkpoint::per_rank_provider("ddp", ddp));
//   RankState s = checkpoint::collect(ts);          // ... after opt.step(), between steps
//   checkpoint::restore(ts, s.replicated, s.per_rank);  // same world size: exact
//
// Keys (docs/checkpoint_state.md has what each part holds and why):
//   replicated: "model.<name>"  Module::state_dict (parameters, buffers)
//               "optim.<key>"   Optimizer::state_dict (moments, f32 master weights, steps, lrs);
//                               per rank instead for a sharded one (parallel::DistributedOptimizer)
//               "scaler.<key>"  GradScaler::state_dict, f64 scalars
//               "sched.<key>"   LRScheduler::state_dict, f64 scalars
//               "loader.epoch", "loader.batch" (the next batch), and "loader.global_batch",
//               "loader.samples", "loader.seed", which must match the loader restored into
//   per_rank:   "rng.<name>.seed", ".stream", ".offset" (i64, the Philox state, bit for bit)
//               "<extra>.<key>" for each extra provider (replicated when it says so)
// Tensors share storage with the live parts, as Module::state_dict's do: save (or clone) them
// before training on.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "fathom/checkpoint/state.h"
#include "fathom/core/random.h"
#include "fathom/data/loader.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"
#include "fathom/optim/scheduler.h"

namespace fathom::checkpoint {

// The state of a part that lives in a layer above checkpoint (parallel::DistributedDataParallel),
// reached through callbacks. Its keys go under "<name>.".
struct StateProvider {
  std::string name;
  bool per_rank = true;  // false: the same on every rank, saved in RankState::replicated
  std::function<nn::StateDict()> save;
  // Throws naming every problem with a saved state and changes nothing; load runs only once
  // every part's check has passed.
  std::function<void(const nn::StateDict&)> check;
  std::function<void(const nn::StateDict&)> load;
  // For restore_resharded (per-rank providers): this rank's state made from the saved ranks'
  // (read(r), r < saved_world, gives saved rank r's, its keys without "<name>."). Null: the
  // provider cannot resume on another world size, and restore_resharded says so.
  std::function<nn::StateDict(int saved_world, const std::function<nn::StateDict(int)>& read)> reshard;
};

// A per-rank provider for an object with state_dict(), check_state_dict() and load_state_dict(),
// and reshard_state_dict(saved_world, read) when it has one (DistributedDataParallel has all
// four). The object must outlive the provider.
template <class T>
StateProvider per_rank_provider(std::string name, T& object) {
  StateProvider p;
  p.name = std::move(name);
  p.save = [&object] { return object.state_dict(); };
  p.check = [&object](const nn::StateDict& s) { object.check_state_dict(s); };
  p.load = [&object](const nn::StateDict& s) { object.load_state_dict(s); };
  if constexpr (requires { object.reshard_state_dict(1, std::function<nn::StateDict(int)>()); })
    p.reshard = [&object](int w, const std::function<nn::StateDict(int)>& read) {
      return object.reshard_state_dict(w, read);
    };
  return p;
}

// The parts of one training loop; a null pointer is a part it does not use. The parts must
// outlive the TrainState.
struct TrainState {
  nn::Module* model = nullptr;
  optim::Optimizer* optimizer = nullptr;  // its state includes the f32 master weights
  optim::GradScaler* scaler = nullptr;
  optim::LRScheduler* scheduler = nullptr;
  data::DataLoader* loader = nullptr;
  // Every generator the loop draws from (dropout, augmentation), by name (no dots). The
  // default generator is in unless erased: init and ops without a generator draw from it.
  std::map<std::string, Generator*> generators{{"default", &default_generator()}};
  std::vector<StateProvider> extras;  // names must differ from the parts' prefixes and each other
};

// Every part's state, split into what all ranks share and what is this rank's own.
RankState collect(const TrainState& ts);

// Puts a collected state back (same world size: the resumed run is bitwise the uninterrupted
// one). Strict: every part of `ts` must find its keys (an extra's check decides whether none is
// fine), and every key must belong to a part of `ts`. Every part is checked before any is changed; the error names every problem found
// (the model's own check, Module::load_state_dict, runs last of them, before anything is written).
void restore(TrainState& ts, const nn::StateDict& replicated, const nn::StateDict& per_rank);

// Resumes a state saved by `saved_world` ranks on another number of ranks. read(r) returns
// saved rank r's per_rank dict (r < saved_world); it is called up to once per saved rank for the
// generators and once more per resharding extra, so only one saved rank's state need be in
// memory at a time. The replicated state is restored unchanged. Per-rank state, as a fresh run
// on this many ranks would have it: each generator keeps the seed and stream this process
// constructed it with and moves its offset past the largest any saved rank reached (no random
// number is drawn twice; generators that agreed across ranks still agree); a sharded optimizer
// cuts the saved shards into this rank's (Optimizer::reshard_state_dict); each extra is
// resharded by its provider (DDP: the layout as saved, each 2:4 residual the mean of the saved
// ranks', which keeps what error feedback owes the averaged gradient). Not bitwise.
void restore_resharded(TrainState& ts, const nn::StateDict& replicated, int saved_world,
                       const std::function<nn::StateDict(int saved_rank)>& read_per_rank);

}  // namespace fathom::checkpoint
