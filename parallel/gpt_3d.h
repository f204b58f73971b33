#pragma once
// A GPT trained with all three axes of a parallel::Mesh at once: data parallelism over
// mesh.dp_group(), tensor parallelism inside a pipeline stage over mesh.tp_group(), and a
// pipeline over mesh.pp_group() (Megatron's 3D parallelism).
//
//   parallel::Mesh mesh(world, dp, pp, tp);
//   parallel::GPT3D model(config, mesh, parallel::GPT3DOptions().microbatches(4)
//                             .microbatch_size(b).seq_len(T), &init_gen);
//   parallel::MeshOptimizer<optim::AdamW> opt(model.named_parameters(), optim::AdamWOptions(1e-3),
//                                             model.mesh_norm());
//   opt.zero_grad();
//   double loss = model.forward_backward(inputs, targets, scaler.get_scale());
//   scaler.step(opt, /*max_norm=*/1.0);   // the global norm over the whole mesh
//
// Rank (dp d, pp r, tp t) holds chunks c = 0 .. v - 1, each a TPGPT (tp_gpt.h) for model chunk
// c p + r of K = p v, whose blocks [k L / K, (k + 1) L / K) are split over the tp group; chunk 0
// of pp rank 0 also holds wte and wpe, chunk v - 1 of pp rank p - 1 ln_f and the tied output
// projection. The Pipeline (pipeline.h) runs those chunks over the pp group: each tp rank of a
// stage sends its (identical, replicated) activation to the same tp rank of the next stage, so
// there are tp pipelines side by side, one per pp group, whose stages all-reduce over tp inside.
//
// forward_backward runs the schedule over every micro-batch, then:
// - tied embeddings: pp rank 0's wte shard and pp rank p - 1's copy of the same vocabulary rows
//   (same dp and tp coordinates: Megatron's embedding group, one per (dp, tp)) add each other's
//   gradient, so the two copies stay bitwise equal and each gets the one tied parameter's grad;
// - data parallelism: with dp > 1 each chunk is wrapped in a DistributedDataParallel over the
//   dp group, held in no_sync() for the step and released by the Pipeline's before_last_backward
//   hook just before the chunk's last backward (its last B, or W under ZB-H1), so DDP averages
//   the gradients accumulated over all m micro-batches exactly once per step, its buckets
//   overlapping that last pass;
// - the loss: the pipeline's mean over the micro-batches, averaged over dp: the global batch's
//   mean loss, the same on every rank of the mesh.
// The gradient norm (mesh_norm(): split parameters summed over tp, replicated ones counted on tp
// rank 0, stages summed over pp, the last stage's wte copy left out) is then the one-process
// model's, and GradScaler's coefficient and inf checks agree on every rank.
//
// Initialisation is the dense nn::GPT's from `gen` for any (dp, pp, tp), so the same seed trains
// the same model as one process. Not supported (clear errors): dropout > 0 (TPGPT), v > 1 with
// p = 1 (both ends of the model on one rank would need one shared wte), generation (gather the
// model with full_state_dict_on_root and run nn::GPT::generate there).
#include <memory>
#include <optional>
#include <vector>

#include "fathom/nn/gpt.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"
#include "fathom/parallel/grad_norm.h"
#include "fathom/parallel/mesh.h"
#include "fathom/parallel/pipeline.h"
#include "fathom/parallel/tp_gpt.h"

namespace fathom::parallel {

struct GPT3DOptions {
  FATHOM_ARG(ScheduleKind, schedule) = ScheduleKind::one_f_one_b;
  FATHOM_ARG(int, microbatches) = 1;
  FATHOM_ARG(int, virtual_stages) = 1;  // v: chunks per pp rank (the interleaved schedule)
  FATHOM_ARG(int64_t, microbatch_size) = 1;  // b: sequences per micro-batch
  FATHOM_ARG(int64_t, seq_len) = 0;          // T: 0 is the config's block_size
  FATHOM_ARG(DType, dtype) = DType::f32;     // of the parameters and the activations sent
  FATHOM_ARG(Device, device) = Device::cpu();
  FATHOM_ARG(DDPOptions, ddp);               // for each chunk's DDP when dp > 1
};

class GPT3D {
 public:
  // Collective over nothing; every rank passes `gen` in the same state (it is copied, not
  // advanced: each chunk draws the dense model from the same state). `mesh` must outlive this.
  GPT3D(const nn::GPTConfig& config, const Mesh& mesh, GPT3DOptions options, const Generator& gen);
  GPT3D(const GPT3D&) = delete;
  GPT3D& operator=(const GPT3D&) = delete;

  // One step's forward and backward over this dp rank's m micro-batches (inputs [b, T] token
  // ids on pp rank 0, targets [b, T] on pp rank p - 1; others may pass empty lists), with the
  // loss multiplied by loss_scale before backward (GradScaler::get_scale()); DDP averages the
  // gradients over dp during the last backward, then the tied gradients are summed. Returns the
  // unscaled mean loss of the global batch on every rank. Call opt.zero_grad() before.
  double forward_backward(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets,
                          double loss_scale = 1.0);

  // This rank's parameters under nn::GPT's names, each once (for the optimizer).
  optim::NamedParams named_parameters() const;
  int64_t num_local_parameters() const;
  // For MeshOptimizer: the norm over tp, pp and the tied wte counted once.
  MeshNorm mesh_norm() const;
  // The dense model's state_dict (nn::GPT names) on world rank 0 (dp 0, pp 0, tp 0); empty on
  // every other rank. Collective over the whole mesh (the tp all-gathers run in every replica).
  nn::StateDict full_state_dict_on_root() const;

  const Mesh& mesh() const { return mesh_; }
  const nn::GPTConfig config;
  const GPT3DOptions options;
  std::vector<std::shared_ptr<TPGPT>> chunks;  // chunk c: model chunk c p + pp_rank
  Pipeline& pipeline() { return *pipe_; }
  // Chunk c's DDP over the dp group (its state belongs in a checkpoint); null when dp = 1.
  DistributedDataParallel* ddp(int chunk) { return ddps_.empty() ? nullptr : ddps_.at(size_t(chunk)).get(); }

 private:
  void sum_tied_embedding();

  const Mesh& mesh_;
  std::vector<std::unique_ptr<DistributedDataParallel>> ddps_;  // per chunk, dp > 1
  std::vector<std::optional<DistributedDataParallel::NoSync>> no_sync_;
  std::unique_ptr<Pipeline> pipe_;
  double loss_scale_ = 1.0;  // read by the pipeline's loss function
};

}  // namespace fathom::parallel
