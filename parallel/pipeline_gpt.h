#pragma once
// A GPT (nn/gpt.h) cut into pipeline stages, for parallel::Pipeline.
//
//   parallel::GPTStages st = parallel::split_gpt(cfg, /*seed=*/0, pp->size(), pp->rank(), v);
//   parallel::Pipeline pipe(*pp, st.chunks, parallel::gpt_loss,
//       parallel::PipelineOptions().microbatches(m).activation_shape(st.activation_shape(b, T)));
//   optim::AdamW opt(st.named_parameters(), optim::AdamWOptions(1e-3));
//   opt.zero_grad(); pipe.step(idx, targets); st.allreduce_tied_embedding(*pp); opt.step();
//
// Model chunk k of K = p v holds blocks [k L / K, (k + 1) L / K) (n_layer % K == 0, else an
// error); chunk 0 also holds wte, wpe and drop, chunk K - 1 also ln_f and the logits through the
// tied wte. With interleaving, rank r's chunk c is model chunk c p + r. Parameters keep the
// full model's names ("blocks.3.attn.qkv.weight"), so checkpoints and optimizer state line up.
//
// Initialisation: every rank builds the whole nn::GPT with Generator(seed) and keeps only its
// own modules, so every stage starts exactly as the one-process model would (the cost: each
// rank draws, briefly, the whole model).
//
// Tied embeddings: with p > 1 the last stage holds its own copy of wte, equal at the start. Both
// copies' gradients must be summed after each backward (allreduce_tied_embedding, Megatron's
// embedding group) so the two stay identical under any optimizer; the sum is what the one
// tied parameter of a single process gets. With p = 1 both ends share one wte.
#include <cstdint>
#include <memory>
#include <vector>

#include "fathom/comm/process_group.h"
#include "fathom/nn/gpt.h"

namespace fathom::parallel {

// One model chunk. forward: idx [b, T] -> [b, T, C] on the first chunk, [b, T, C] -> [b, T, C]
// in between, and -> logits [b, T, V] on the last (idx -> logits when it is both).
class GPTChunk : public nn::Module {
 public:
  // Shares `full`'s modules; `wte` is the embedding the last chunk projects the logits with.
  GPTChunk(nn::GPT& full, int index, int num_chunks, std::shared_ptr<nn::Embedding> wte);
  Tensor forward(const Tensor& x) override;

  int index, num_chunks;
  int64_t first_block, num_blocks;
  std::shared_ptr<nn::Embedding> wte, wpe;  // wte: first and last chunk; wpe: first
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::Module> blocks;  // children named by their index in the full model
  std::shared_ptr<nn::LayerNorm> ln_f;
  int64_t block_size;
};

struct GPTStages {
  nn::GPTConfig config;
  int pp_size = 1, pp_rank = 0;
  std::vector<std::shared_ptr<nn::Module>> chunks;  // for Pipeline: chunk c = model chunk c p + r
  // The chunks' parameters under the full model's names, each once.
  nn::NamedTensors named_parameters() const;
  // The tensor passed between stages for a micro-batch of b sequences of T tokens: [b, T, C].
  Shape activation_shape(int64_t b, int64_t T) const { return {b, T, config.n_embd}; }
  // The wte this rank holds (first or last stage), or undefined.
  Tensor wte_weight() const;
  // After backward: the first and last stage (pp ranks 0 and p - 1) add each other's wte
  // gradient (send/recv on pp_group, tag 31999, which no Pipeline uses). No-op on other ranks and when p = 1.
  void allreduce_tied_embedding(comm::ProcessGroup& pp_group) const;
};

// Rank pp_rank's chunks of the GPT nn::GPT(config, Generator(seed)) would build.
GPTStages split_gpt(const nn::GPTConfig& config, uint64_t seed, int pp_size, int pp_rank,
                    int virtual_stages = 1);

// The loss for Pipeline: mean cross-entropy of logits [b, T, V] against targets [b, T].
Tensor gpt_loss(const Tensor& logits, const Tensor& targets);

}  // namespace fathom::parallel
