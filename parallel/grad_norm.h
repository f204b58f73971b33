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
#include <vector>

#include "fathom/comm/process_group.h"
#include "fathom/core/tensor.h"

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

}  // namespace fathom::parallel
