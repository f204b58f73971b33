#pragma once
// The 3D device mesh: world = dp x pp x tp ranks, one ProcessGroup per axis.
//
//   parallel::Mesh mesh(*comm::init().world, /*dp=*/2, /*pp=*/1, /*tp=*/2);
//   mesh.check_model(config);                         // heads, vocab, 4C, layers divide
//   auto model = std::make_shared<parallel::TPGPT>(config, mesh.tp_group());
//   parallel::DistributedDataParallel ddp(model, mesh.dp_group());
//
// Rank order is Megatron's: tp fastest, then dp, then pp,
//   world_rank = pp_rank * dp * tp + dp_rank * tp + tp_rank,
// so the ranks of one tensor-parallel group are neighbours (one node, the fastest links), and
// each group's ranks are ordered by their coordinate on its axis (pp_group rank i is stage i).
// docs/parallel.md has the layout and what each axis holds.
#include <memory>
#include <string>

#include "fathom/comm/process_group.h"
#include "fathom/nn/gpt.h"

namespace fathom::parallel {

// One rank's place in the mesh.
struct MeshCoord {
  int dp = 0, pp = 0, tp = 0;
};

class Mesh {
 public:
  // Collective over `world` (three or four split()s, the same on every rank). Throws when a
  // size is not positive or dp * pp * tp differs from world.size().
  Mesh(comm::ProcessGroup& world, int dp, int pp, int tp);

  int dp() const { return dp_; }
  int pp() const { return pp_; }
  int tp() const { return tp_; }
  int world_size() const { return dp_ * pp_ * tp_; }
  int world_rank() const { return world_rank_; }
  int dp_rank() const { return coord_.dp; }
  int pp_rank() const { return coord_.pp; }
  int tp_rank() const { return coord_.tp; }
  MeshCoord coord() const { return coord_; }

  // The ranks that differ only in their dp (pp, tp) coordinate, ordered by it.
  const std::shared_ptr<comm::ProcessGroup>& dp_group() const { return dp_group_; }
  const std::shared_ptr<comm::ProcessGroup>& pp_group() const { return pp_group_; }
  const std::shared_ptr<comm::ProcessGroup>& tp_group() const { return tp_group_; }
  // The model-parallel group: the pp x tp ranks of one data-parallel replica (same dp_rank),
  // ordered by world rank. A global gradient norm sums over it (parallel/grad_norm.h).
  const std::shared_ptr<comm::ProcessGroup>& mp_group() const { return mp_group_; }

  // Pure arithmetic on the layout, for any rank (neighbour stages, messages).
  static int rank_of(MeshCoord c, int dp, int pp, int tp);
  static MeshCoord coord_of(int world_rank, int dp, int pp, int tp);
  int rank_of(MeshCoord c) const { return rank_of(c, dp_, pp_, tp_); }

  // Every way `config` does not split over this mesh, in one error naming the numbers:
  // n_head % tp, vocab_size % tp, 4 * n_embd % tp, n_layer % pp. The vocabulary is not padded
  // (Megatron pads it with extra rows, which changes the model and its loss); the message says
  // which vocab_size to pick instead.
  void check_model(const nn::GPTConfig& config) const;
  static void check_model(const nn::GPTConfig& config, int pp, int tp);

  std::string str() const;  // "mesh dp=2 pp=1 tp=2 (rank 3: dp 1, pp 0, tp 1)"

 private:
  int dp_, pp_, tp_;
  int world_rank_;
  MeshCoord coord_;
  std::shared_ptr<comm::ProcessGroup> dp_group_, pp_group_, tp_group_, mp_group_;
};

}  // namespace fathom::parallel
