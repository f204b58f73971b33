#pragma once
// GPT-2 (as in nanoGPT and llm.c): token + position embeddings, pre-LayerNorm transformer
// blocks, a final LayerNorm, and logits through the token embedding (tied weights).
#include <string>

#include "fathom/core/random.h"
#include "fathom/nn/dropout.h"
#include "fathom/nn/embedding.h"
#include "fathom/nn/layer_norm.h"
#include "fathom/nn/linear.h"
#include "fathom/nn/sequential.h"

namespace fathom::nn {

// Activation recomputation (autograd/recompute.h), as Megatron's --recompute-granularity:
// selective reruns only attention's core (QK^T, mask, softmax, dropout, @V), whose [B, H, T, T]
// tensors are most of a block's activations and few of its flops; full keeps only each block's
// input and reruns the whole block during backward. Gradients are the same either way.
enum class Recompute { none, selective, full };
const char* recompute_name(Recompute r);
Recompute parse_recompute(const std::string& s);  // "none", "selective" or "full"

struct GPTConfig {
  int64_t vocab_size = 50257;
  int64_t block_size = 1024;  // the longest sequence T
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  double dropout = 0.0;
  Recompute recompute = Recompute::none;
};

// Multi-head causal self-attention: one fused qkv projection, a causal mask (masked_fill with
// -inf before the softmax) and an output projection.
class CausalSelfAttention : public Module {
 public:
  explicit CausalSelfAttention(const GPTConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;  // [B, T, C] -> [B, T, C]

  std::shared_ptr<Linear> qkv;   // C -> 3C
  std::shared_ptr<Linear> proj;  // C -> C, a residual projection
  std::shared_ptr<Dropout> attn_dropout, resid_dropout;
  int64_t n_head, n_embd;
  bool recompute_core;  // Recompute::selective

 private:
  Tensor core(const Tensor& q, const Tensor& k, const Tensor& v);  // [B, H, T, D] each
};

// The feed-forward half of a block: C -> 4C -> GELU (tanh) -> C.
class MLP : public Module {
 public:
  explicit MLP(const GPTConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<Linear> fc;
  std::shared_ptr<Linear> proj;  // a residual projection
  std::shared_ptr<Dropout> dropout;
};

// x + attn(ln1(x)), then x + mlp(ln2(x)).
class Block : public Module {
 public:
  explicit Block(const GPTConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
  bool recompute_block;  // Recompute::full

 private:
  Tensor body(const Tensor& x);
};

// Initialised as GPT-2: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)),
// biases 0, LayerNorm weight 1 and bias 0; all draws from gen (or the default generator).
class GPT : public Module {
 public:
  explicit GPT(const GPTConfig& config, Generator* gen = nullptr);

  // idx [B, T] integer, T <= block_size -> logits [B, T, vocab_size].
  Tensor forward(const Tensor& idx) override;
  // The mean cross-entropy of the logits against targets [B, T] (ignore_index -100 skips).
  Tensor forward(const Tensor& idx, const Tensor& targets);

  // Appends max_new_tokens sampled tokens to idx [B, T0], feeding back at most block_size of
  // context, and returns [B, T0 + max_new_tokens]. temperature 0 picks the most likely token.
  // Runs in eval mode without recording (the training mode is restored after).
  Tensor generate(const Tensor& idx, int64_t max_new_tokens, double temperature = 1.0,
                  Generator* gen = nullptr);

  GPTConfig config;
  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<Sequential> blocks;
  std::shared_ptr<LayerNorm> ln_f;
};

}  // namespace fathom::nn
