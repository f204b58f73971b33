#include "fathom/parallel/mesh.h"

#include <sstream>

#include "fathom/core/error.h"

namespace fathom::parallel {

int Mesh::rank_of(MeshCoord c, int dp, int pp, int tp) {
  FATHOM_CHECK(c.dp >= 0 && c.dp < dp && c.pp >= 0 && c.pp < pp && c.tp >= 0 && c.tp < tp,
               "Mesh::rank_of: coordinate (dp ", c.dp, ", pp ", c.pp, ", tp ", c.tp,
               ") is outside the mesh dp=", dp, " pp=", pp, " tp=", tp);
  return (c.pp * dp + c.dp) * tp + c.tp;
}

MeshCoord Mesh::coord_of(int world_rank, int dp, int pp, int tp) {
  FATHOM_CHECK(dp > 0 && pp > 0 && tp > 0 && world_rank >= 0 && world_rank < dp * pp * tp,
               "Mesh::coord_of: rank ", world_rank, " is outside the mesh dp=", dp, " pp=", pp,
               " tp=", tp);
  MeshCoord c;
  c.tp = world_rank % tp;
  c.dp = (world_rank / tp) % dp;
  c.pp = world_rank / (tp * dp);
  return c;
}

Mesh::Mesh(comm::ProcessGroup& world, int dp, int pp, int tp) : dp_(dp), pp_(pp), tp_(tp) {
  FATHOM_CHECK(dp > 0 && pp > 0 && tp > 0, "Mesh: sizes dp=", dp, " pp=", pp, " tp=", tp,
               " must all be positive");
  FATHOM_CHECK(int64_t(dp) * pp * tp == world.size(), "Mesh: dp=", dp, " x pp=", pp, " x tp=",
               tp, " = ", int64_t(dp) * pp * tp, " ranks, but the world group ", world.name(),
               " has ", world.size(), "; pick sizes whose product is the number of ranks");
  world_rank_ = world.rank();
  coord_ = coord_of(world_rank_, dp, pp, tp);
  // Each split's color names the other coordinates; its key orders the group by its own axis.
  // The four splits run in the same order on every rank, as split() requires.
  tp_group_ = world.split(coord_.pp * dp + coord_.dp, coord_.tp, "tp");
  dp_group_ = world.split(coord_.pp * tp + coord_.tp, coord_.dp, "dp");
  pp_group_ = world.split(coord_.dp * tp + coord_.tp, coord_.pp, "pp");
  mp_group_ = world.split(coord_.dp, world_rank_, "mp");
  FATHOM_CHECK(tp_group_ && dp_group_ && pp_group_ && mp_group_ && tp_group_->size() == tp &&
                   dp_group_->size() == dp && pp_group_->size() == pp &&
                   mp_group_->size() == pp * tp && tp_group_->rank() == coord_.tp &&
                   dp_group_->rank() == coord_.dp && pp_group_->rank() == coord_.pp,
               "Mesh: the groups split from ", world.name(), " do not have the mesh's shape (",
               str(), ")");
}

void Mesh::check_model(const nn::GPTConfig& c) const { check_model(c, pp_, tp_); }

void Mesh::check_model(const nn::GPTConfig& c, int pp, int tp) {
  FATHOM_CHECK(pp > 0 && tp > 0, "Mesh::check_model: pp=", pp, " and tp=", tp,
               " must be positive");
  std::ostringstream bad;
  if (c.n_head % tp)
    bad << "\n  n_head " << c.n_head << " is not divisible by tp " << tp
        << " (attention heads are split across the tensor-parallel ranks)";
  if (c.vocab_size % tp) {
    int64_t padded = (c.vocab_size + tp - 1) / tp * tp;
    bad << "\n  vocab_size " << c.vocab_size << " is not divisible by tp " << tp
        << " (the embedding's rows are split); use vocab_size " << padded
        << " (Fathom does not pad it for you: padding changes the model)";
  }
  if ((4 * c.n_embd) % tp)
    bad << "\n  4 * n_embd = " << 4 * c.n_embd << " is not divisible by tp " << tp
        << " (the MLP's hidden features are split)";
  if (c.n_layer % pp)
    bad << "\n  n_layer " << c.n_layer << " is not divisible by pp " << pp
        << " (each pipeline stage holds n_layer / pp blocks)";
  std::string msg = bad.str();
  FATHOM_CHECK(msg.empty(), "Mesh::check_model: GPT (n_layer ", c.n_layer, ", n_head ", c.n_head,
               ", n_embd ", c.n_embd, ", vocab_size ", c.vocab_size, ") does not split over pp=",
               pp, " tp=", tp, ":", msg);
}

std::string Mesh::str() const {
  std::ostringstream os;
  os << "mesh dp=" << dp_ << " pp=" << pp_ << " tp=" << tp_ << " (rank " << world_rank_
     << ": dp " << coord_.dp << ", pp " << coord_.pp << ", tp " << coord_.tp << ")";
  return os.str();
}

}  // namespace fathom::parallel
