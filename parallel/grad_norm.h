#pragma once
// The global gradient norm of a model split over a mesh (Megatron's get_grad_norm_fp32): each
// gradient element of the whole model counted exactly once, whichever rank holds it.
//
//   auto [sharded, replicated] = ...;  // e.g. TPGPT::sharded_parameters() / replicated_parameters()
//   double norm = parallel::clip_grad_norm_(grads_of(sharded), grads_of(replicated), max_norm,
//                                           *mesh.tp_group(), {mesh.pp_group().get()});
//
// A sharded gradient (a slice that only this tp rank has) is summed over the tp group; a
// replicated one (the same on every tp rank: LayerNorms, row-parallel biases, wpe; see
// tp_gpt.h) is counted on tp rank 0 only. `disjoint_groups` are further groups whose ranks hold
// different parameters and whose squares are summed too: the pp group (each stage its own
// layers; count a weight held on two stages, the tied wte of the first and last, on one of
// them only), or the dp group under ZeRO-2 (each rank its own gradient shard). Do not list the
// dp group for plain DDP: its ranks hold the same averaged gradients. Every rank of every group
// calls it (collective), with its lists in any order.
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fathom/comm/process_group.h"
#include "fathom/core/tensor.h"
#include "fathom/optim/optimizer.h"

namespace fathom::parallel {

// Undefined gradients are skipped; any inf or nan makes the result non-finite on every rank.
double grad_norm(const std::vector<Tensor>& sharded_grads,
                 const std::vector<Tensor>& replicated_grads, comm::ProcessGroup& tp_group,
                 const std::vector<comm::ProcessGroup*>& disjoint_groups = {});
// Scales every gradient by optim::clip_coefficient(norm, max_norm) and returns the norm before
// clipping. The coefficient is the same on every rank, so replicated gradients stay identical.
double clip_grad_norm_(const std::vector<Tensor>& sharded_grads,
                       const std::vector<Tensor>& replicated_grads, double max_norm,
                       comm::ProcessGroup& tp_group,
                       const std::vector<comm::ProcessGroup*>& disjoint_groups = {});
// The gradients of `params` (undefined where a parameter has none), for the lists above.
std::vector<Tensor> grads_of(const std::vector<Tensor>& params);

// Which parameters are split and over which groups the norm sums, by parameter name.
struct MeshNorm {
  // True for a parameter whose tensor is this rank's slice (TPGPT::shard_spec(name).sharded()).
  std::function<bool(const std::string&)> is_sharded;
  std::shared_ptr<comm::ProcessGroup> tp_group;
  std::vector<std::shared_ptr<comm::ProcessGroup>> disjoint_groups;  // e.g. {mesh.pp_group()}
  // False for a parameter to leave out (a copy counted elsewhere: the last pipeline stage's
  // tied wte); unset counts every parameter.
  std::function<bool(const std::string&)> counted;
};

// The mesh-wide norm of an optimizer's gradients (its gradients(), split by MeshNorm).
double grad_norm(const optim::Optimizer& opt, const MeshNorm& norm);

// An optimizer whose grad_norm() is the norm over the whole mesh, so GradScaler::step(opt,
// max_norm) clips and checks for inf/nan with the model's true global norm and every rank gets
// the same coefficient (and skips together):
//
//   parallel::MeshOptimizer<optim::AdamW> opt(model->named_parameters(), optim::AdamWOptions(1e-3),
//       {[](const std::string& n) { return parallel::TPGPT::shard_spec(n).sharded(); },
//        mesh.tp_group(), {mesh.pp_group()}});
//   scaler.step(opt, /*max_norm=*/1.0);   // collective over tp and pp
//
// Everything else is Algo's (state_dict, schedulers, param groups).
template <class Algo>
class MeshOptimizer : public Algo {
 public:
  template <class O>
  MeshOptimizer(optim::NamedParams params, const O& defaults, MeshNorm norm)
      : Algo(std::move(params), defaults), norm_(std::move(norm)) {
    check();
  }
  template <class O>
  MeshOptimizer(std::vector<optim::ParamGroup> groups, const O& defaults, MeshNorm norm)
      : Algo(std::move(groups), defaults), norm_(std::move(norm)) {
    check();
  }
  double grad_norm() const override { return parallel::grad_norm(*this, norm_); }
  const MeshNorm& mesh_norm() const { return norm_; }

 private:
  void check() const {
    FATHOM_CHECK(norm_.is_sharded && norm_.tp_group, "MeshOptimizer: MeshNorm needs is_sharded "
                 "and tp_group (a group of one when there is no tensor parallelism)");
  }
  MeshNorm norm_;
};

}  // namespace fathom::parallel
