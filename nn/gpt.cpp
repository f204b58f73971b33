#include "fathom/nn/gpt.h"

#include <cmath>

#include "fathom/autograd/ops.h"
#include "fathom/autograd/recompute.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/nn/init.h"

namespace fathom::nn {

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  detail::fail("recompute_name: unknown value ", int(r));
}

Recompute parse_recompute(const std::string& s) {
  if (s == "none") return Recompute::none;
  if (s == "selective") return Recompute::selective;
  if (s == "full") return Recompute::full;
  detail::fail("recompute '", s, "': expected none, selective or full");
}

// ---- attention ----

CausalSelfAttention::CausalSelfAttention(const GPTConfig& c, Generator* gen)
    : Module("CausalSelfAttention"), n_head(c.n_head), n_embd(c.n_embd),
      recompute_core(c.recompute == Recompute::selective) {
  FATHOM_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, "CausalSelfAttention: n_embd ",
               c.n_embd, " is not divisible by n_head ", c.n_head);
  qkv = register_module("qkv", std::make_shared<Linear>(LinearOptions(c.n_embd, 3 * c.n_embd), gen));
  proj = register_module("proj", std::make_shared<Linear>(LinearOptions(c.n_embd, c.n_embd), gen));
  attn_dropout = register_module("attn_dropout", std::make_shared<Dropout>(c.dropout));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  FATHOM_CHECK(x.dim() == 3 && x.size(2) == n_embd, "CausalSelfAttention: input ", x.desc(),
               " must be [B, T, ", n_embd, "]");
  int64_t B = x.size(0), T = x.size(1), C = n_embd, H = n_head, D = C / H;
  std::vector<Tensor> qkv_parts = split(qkv->forward(x), C, 2);  // 3 x [B, T, C]
  auto heads = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
  Tensor q = heads(qkv_parts[0]), k = heads(qkv_parts[1]), v = heads(qkv_parts[2]);  // [B, H, T, D]
  Tensor y;                                                                          // [B, H, T, D]
  if (recompute_core)
    y = autograd::recompute("attention core", [this](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{core(in[0], in[1], in[2])};
        }, {q, k, v})[0];
  else
    y = core(q, k, v);
  y = y.transpose(1, 2).contiguous().view({B, T, C});  // heads side by side
  return resid_dropout->forward(proj->forward(y));
}

Tensor CausalSelfAttention::core(const Tensor& q, const Tensor& k, const Tensor& v) {
  int64_t T = q.size(2), D = q.size(3);
  Tensor att = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(D)));  // [B, H, T, T]
  // Position j is hidden from query i when j > i. -inf (not a large negative number) keeps the
  // masked probabilities exactly 0 in every dtype.
  Tensor pos = arange(T, {DType::i64, q.device()});
  Tensor future = gt(pos.view({1, T}), pos.view({T, 1}));  // [T, T] bool
  att = masked_fill(att, future, -INFINITY);
  att = attn_dropout->forward(softmax(att, -1));
  return matmul(att, v);
}

// ---- MLP and block ----

MLP::MLP(const GPTConfig& c, Generator* gen) : Module("MLP") {
  fc = register_module("fc", std::make_shared<Linear>(LinearOptions(c.n_embd, 4 * c.n_embd), gen));
  proj = register_module("proj", std::make_shared<Linear>(LinearOptions(4 * c.n_embd, c.n_embd), gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor MLP::forward(const Tensor& x) {
  return dropout->forward(proj->forward(gelu(fc->forward(x))));
}

Block::Block(const GPTConfig& c, Generator* gen)
    : Module("Block"), recompute_block(c.recompute == Recompute::full) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd)));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(c, gen));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd)));
  mlp = register_module("mlp", std::make_shared<MLP>(c, gen));
}

Tensor Block::forward(const Tensor& x) {
  if (!recompute_block) return body(x);
  return autograd::recompute("Block", [this](const Tensor& in) { return body(in); }, x);
}

Tensor Block::body(const Tensor& x) {
  Tensor h = x + attn->forward(ln1->forward(x));
  return h + mlp->forward(ln2->forward(h));
}

// ---- GPT ----

GPT::GPT(const GPTConfig& c, Generator* gen) : Module("GPT"), config(c) {
  FATHOM_CHECK(c.vocab_size > 0 && c.block_size > 0 && c.n_layer > 0 && c.n_embd > 0,
               "GPT: vocab_size ", c.vocab_size, ", block_size ", c.block_size, ", n_layer ",
               c.n_layer, " and n_embd ", c.n_embd, " must all be positive");
  wte = register_module("wte", std::make_shared<Embedding>(EmbeddingOptions(c.vocab_size, c.n_embd), gen));
  wpe = register_module("wpe", std::make_shared<Embedding>(EmbeddingOptions(c.block_size, c.n_embd), gen));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  blocks = register_module("blocks", std::make_shared<Sequential>());
  for (int64_t i = 0; i < c.n_layer; ++i) blocks->push_back(std::make_shared<Block>(c, gen));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd)));

  // GPT-2's init replaces the layers' defaults, in registration order so a seed fixes it.
  double resid_std = 0.02 / std::sqrt(2.0 * double(c.n_layer));
  for (auto& [name, m] : named_modules()) {
    if (auto* lin = dynamic_cast<Linear*>(m)) {
      bool residual = name.size() >= 5 && name.compare(name.size() - 5, 5, ".proj") == 0;
      init::normal_(lin->weight, 0.0, residual ? resid_std : 0.02, gen);
      if (lin->bias.defined()) init::zeros_(lin->bias);
    } else if (auto* emb = dynamic_cast<Embedding*>(m)) {
      init::normal_(emb->weight, 0.0, 0.02, gen);
    }
  }
}

Tensor GPT::forward(const Tensor& idx) {
  FATHOM_CHECK(idx.dim() == 2 && (idx.dtype() == DType::i64 || idx.dtype() == DType::i32),
               "GPT: idx ", idx.desc(), " must be [B, T] integer token ids");
  int64_t T = idx.size(1);
  FATHOM_CHECK(T <= config.block_size, "GPT: sequence length ", T, " of idx ", idx.desc(),
               " exceeds block_size ", config.block_size);
  Tensor pos = arange(T, {DType::i64, idx.device()});
  Tensor x = drop->forward(wte->forward(idx) + wpe->forward(pos));  // [B, T, C] + [T, C]
  x = ln_f->forward(blocks->forward(x));
  return matmul(x, wte->weight.t());  // [B, T, V]: the tied output projection
}

Tensor GPT::forward(const Tensor& idx, const Tensor& targets) {
  FATHOM_CHECK(targets.shape() == idx.shape(), "GPT: targets ", targets.desc(),
               " must match idx ", idx.desc());
  return cross_entropy(forward(idx), targets);
}

Tensor GPT::generate(const Tensor& idx, int64_t max_new_tokens, double temperature,
                     Generator* gen) {
  FATHOM_CHECK(temperature >= 0, "GPT::generate: temperature must be >= 0, got ", temperature);
  FATHOM_CHECK(max_new_tokens >= 0, "GPT::generate: max_new_tokens must be >= 0");
  NoGradGuard no_grad;
  // Restores the training mode however the loop ends.
  struct ModeGuard {
    Module& m;
    bool was;
    ~ModeGuard() { m.train(was); }
  } mode{*this, is_training()};
  eval();
  Tensor out = ops::to(idx, DType::i64);
  int64_t B = out.size(0), V = config.vocab_size;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    int64_t T = out.size(1), keep = std::min(T, config.block_size);
    Tensor logits = forward(ops::narrow(out, 1, T - keep, keep)).select(1, keep - 1);  // [B, V]
    std::vector<int64_t> next(B);
    if (temperature == 0) {
      std::vector<double> ids = to_vector(logits.argmax(-1));
      for (int64_t b = 0; b < B; ++b) next[b] = int64_t(ids[b]);
    } else {
      // Inverse-CDF sampling on the host: B rows of V probabilities.
      std::vector<double> probs = to_vector(softmax(logits / temperature, -1));
      std::vector<double> u = to_vector(rand({B}, DType::f64, gen));
      for (int64_t b = 0; b < B; ++b) {
        double acc = 0;
        next[b] = V - 1;
        for (int64_t v = 0; v < V; ++v) {
          acc += probs[b * V + v];
          if (u[b] < acc) { next[b] = v; break; }
        }
      }
    }
    Tensor col = from_vector(next, {B, 1}, {DType::i64, out.device()});
    out = ops::cat({out, col}, 1);
  }
  return out;
}

}  // namespace fathom::nn
