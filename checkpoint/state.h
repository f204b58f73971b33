#pragma once
// What one rank saves in a checkpoint and gets back on resume: named tensors, split by owner.
// The checkpointer (checkpoint/checkpointer.h) writes and validates them; train_state.h turns a
// training loop's parts (model, optimizer, scaler, scheduler, loader, RNG, DDP) into one.
// Scalars travel as 0-dim tensors (f64 or i64), so one format carries everything.
#include <cstdint>

#include "fathom/nn/module.h"

namespace fathom::checkpoint {

struct RankState {
  // Identical on every rank of the data-parallel group (parameters, optimizer and master
  // weights, loss scaler, LR schedule, data-loader position): written once, restored everywhere.
  nn::StateDict replicated;
  // This rank's own (its RNG streams, 2:4 compression residuals and mask phase): each rank
  // writes its own, and a resume with another world size must say what it does with them.
  nn::StateDict per_rank;
};

// XXH3-64 of a state's names, dtypes, shapes and bytes, in name order: equal exactly when the
// states are bitwise equal (up to hash collisions). The examples print it of their final
// parameters, so two runs are compared with one line.
uint64_t state_hash(const nn::StateDict& state);

}  // namespace fathom::checkpoint
