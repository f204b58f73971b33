#pragma once
// A tensor-parallel GPT-2: nn::GPT (nn/gpt.h) with Megatron's split of every block over the
// ranks of a tensor-parallel group, and optionally only some of its layers (a pipeline stage).
//
//   parallel::Mesh mesh(world, dp, 1, tp);
//   Generator gen(42);
//   auto model = std::make_shared<parallel::TPGPT>(config, mesh.tp_group(), parallel::TPGPTOptions(), &gen);
//   parallel::DistributedDataParallel ddp(model, mesh.dp_group());
//   Tensor loss = model->forward(idx, targets);   // the same scalar on every tp rank
//
// The split (rank r of tp, C = n_embd, H = n_head):
//   wte              VocabParallelEmbedding: rows [r V/tp, (r+1) V/tp); also the (tied) output
//                    projection, so the logits come out split by vocabulary and go straight
//                    into vocab_parallel_cross_entropy: the full [B, T, V] is never formed.
//   attn.qkv         ColumnParallelLinear C -> 3C: heads [r H/tp, (r+1) H/tp). The dense weight
//                    is [q; k; v] stacked by rows, so rank r holds rows r of each third
//                    (ShardSpec{0, 3}): its q, k and v for its own heads, in that order.
//   attn.proj        RowParallelLinear C -> C (input_is_parallel), bias replicated.
//   mlp.fc           ColumnParallelLinear C -> 4C; GELU on the split features.
//   mlp.proj         RowParallelLinear 4C -> C, bias replicated.
//   wpe, ln1, ln2, ln_f, the row layers' biases: replicated, the same on every tp rank.
// Replicated parameters get the same gradient on every tp rank without any extra reduction:
// everything outside the column..row regions (the residual stream, the LayerNorms' inputs and
// outputs, the row layers' outputs) is identical on every rank in the forward, because it is
// computed from all-reduced values, and its gradient is identical in the backward, because
// copy_to_tp_region all-reduces the partial gradients coming out of each region. (Megatron
// relies on the same, with sequence parallelism off.) So DDP over the dp group and plain
// optimizers work unchanged; a grad norm must count those parameters once (grad_norm.h).
//
// Parameter names are nn::GPT's ("blocks.3.attn.qkv.weight"), layers keep their global index,
// so optimizer state and checkpoints of one (pp, tp) shard line up with the dense model's
// names; shard_spec(name) says how each is cut from the dense tensor.
//
// Initialisation is the dense model's whatever tp: the constructor builds the whole nn::GPT
// from `gen` on every rank (so it costs the dense model's memory, once, at start-up) and
// copies this rank's slices in. The same seed gives the same model for any tp and pp.
//
// Not supported (each is a clear error): dropout > 0 (it needs Megatron's RNG tracker: one
// mask per tp group for replicated activations, one per rank for split ones), sequence
// parallelism, generation.
#include <memory>
#include <string>
#include <vector>

#include "fathom/nn/gpt.h"
#include "fathom/nn/layer_norm.h"
#include "fathom/parallel/tensor_parallel.h"

namespace fathom::parallel {

// How a tensor of the dense model is cut: along `dim` into tp blocks; with `fused` > 1 the dim
// holds that many stacked sub-tensors (qkv: 3) and each is cut into tp blocks, rank r taking
// block r of each, in order. dim < 0: replicated.
struct ShardSpec {
  int64_t dim = -1;
  int64_t fused = 1;
  bool sharded() const { return dim >= 0; }
};
// This rank's piece of the dense tensor `full` (a fresh contiguous tensor).
Tensor shard_of(const Tensor& full, ShardSpec spec, int rank, int size);
// The dense tensor from every rank's piece (collective over `group`: all-gather); `local` for a
// replicated spec or a group of one.
Tensor gather_full(const Tensor& local, ShardSpec spec, comm::ProcessGroup& group);

// Multi-head causal self-attention with this rank's n_head / tp heads.
class TPAttention : public nn::Module {
 public:
  TPAttention(const nn::GPTConfig& config, GroupPtr tp_group);
  Tensor forward(const Tensor& x) override;  // [B, T, C] -> [B, T, C], the same on every rank

  std::shared_ptr<ColumnParallelLinear> qkv;  // C -> 3C, fused [q; k; v] per rank
  std::shared_ptr<RowParallelLinear> proj;    // C -> C
  int64_t n_head_local, head_dim;
  bool recompute_core;  // Recompute::selective
};

// C -> 4C (split) -> GELU -> C.
class TPMLP : public nn::Module {
 public:
  TPMLP(const nn::GPTConfig& config, GroupPtr tp_group);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<ColumnParallelLinear> fc;
  std::shared_ptr<RowParallelLinear> proj;
};

// x + attn(ln1(x)), then x + mlp(ln2(x)): nn::Block, tensor-parallel. A pipeline stage can
// also use it alone.
class TPBlock : public nn::Module {
 public:
  TPBlock(const nn::GPTConfig& config, GroupPtr tp_group);
  Tensor forward(const Tensor& x) override;  // [B, T, C] -> [B, T, C]

  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<TPAttention> attn;
  std::shared_ptr<TPMLP> mlp;
  bool recompute_block;  // Recompute::full

 private:
  Tensor body(const Tensor& x);
};

// Which part of the model this rank holds (a pipeline stage): blocks [layer_begin, layer_end),
// the embeddings (stage 0), the final LayerNorm and logits (the last stage).
struct TPGPTOptions {
  FATHOM_ARG(int64_t, layer_begin) = 0;
  FATHOM_ARG(int64_t, layer_end) = -1;  // -1: n_layer
  FATHOM_ARG(bool, has_embedding) = true;
  FATHOM_ARG(bool, has_head) = true;

 public:
  // A stage i of pp with n_layer / pp blocks each (has_embedding on 0, has_head on pp - 1).
  static TPGPTOptions stage(const nn::GPTConfig& config, int stage, int pp);
};

class TPGPT : public nn::Module {
 public:
  // Collective over nothing: every tp rank builds the dense nn::GPT from gen (the same draws
  // on every rank, so pass generators in the same state) and keeps its slices. A head without
  // the embedding (a last pipeline stage) holds its own copy of wte, as Megatron does: the
  // pipeline must then add the two copies' gradients (first and last stage) before stepping.
  TPGPT(const nn::GPTConfig& config, GroupPtr tp_group, TPGPTOptions options = {},
        Generator* gen = nullptr);

  // The stage's forward: idx [B, T] (has_embedding) or hidden [B, T, C] in; hidden [B, T, C]
  // out, or with has_head this rank's logits [B, T, V / tp] (vocabulary entries
  // [r V/tp, (r+1) V/tp)).
  Tensor forward(const Tensor& input) override;
  // has_head: the mean cross-entropy against targets [B, T] (ignore_index -100 skips), the
  // same scalar on every tp rank.
  Tensor forward(const Tensor& input, const Tensor& targets);

  // The pieces, for a pipeline schedule that wants them apart.
  Tensor embed(const Tensor& idx);          // [B, T] -> [B, T, C]
  Tensor run_blocks(const Tensor& x);       // [B, T, C] -> [B, T, C]
  Tensor logits(const Tensor& x);           // [B, T, C] -> ln_f -> [B, T, V / tp]
  Tensor loss(const Tensor& x, const Tensor& targets);  // [B, T, C] -> scalar

  // How the dense tensor `name` (an nn::GPT name) is cut; replicated for names it does not
  // split.
  static ShardSpec shard_spec(const std::string& name);
  // This rank's slices copied from a dense model's state_dict (nn::GPT names; keys of other
  // layers or stages are ignored, a missing or mis-shaped one is an error naming it).
  void load_full_state_dict(const nn::StateDict& full);
  // The dense tensors of this stage's parameters, under nn::GPT's names. Collective over the
  // tp group (one all-gather per split parameter, in named_parameters() order).
  nn::StateDict full_state_dict() const;
  // The same for the gradients (undefined gradients are an error naming the parameter).
  nn::StateDict full_grads() const;
  // This stage's parameters, split (different on every tp rank) or replicated.
  std::vector<Tensor> sharded_parameters() const;
  std::vector<Tensor> replicated_parameters() const;

  nn::GPTConfig config;
  TPGPTOptions options;
  GroupPtr tp_group;
  std::shared_ptr<VocabParallelEmbedding> wte;  // has_embedding or has_head
  std::shared_ptr<nn::Embedding> wpe;           // has_embedding
  std::vector<std::shared_ptr<TPBlock>> blocks;  // registered as blocks.<global index>
  std::shared_ptr<nn::LayerNorm> ln_f;           // has_head
};

}  // namespace fathom::parallel
