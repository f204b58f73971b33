#include "fathom/parallel/tp_gpt.h"

#include <cmath>

#include "fathom/autograd/ops.h"
#include "fathom/autograd/recompute.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/mesh.h"

namespace fathom::parallel {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The layers' own init is overwritten by the dense model's slices: it draws from a throwaway
// generator so the default one (data order, dropout elsewhere) is left as it was, whatever tp.
Generator& scratch_generator() {
  static thread_local Generator g(0);
  return g;
}

// nn::CausalSelfAttention's core on this rank's heads: q, k, v [B, h, T, D] -> [B, h, T, D].
Tensor attention_core(const Tensor& q, const Tensor& k, const Tensor& v) {
  int64_t T = q.size(2), D = q.size(3);
  Tensor att = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(D)));  // [B, h, T, T]
  Tensor pos = arange(T, {DType::i64, q.device()});
  Tensor future = gt(pos.view({1, T}), pos.view({T, 1}));  // [T, T] bool
  return matmul(softmax(masked_fill(att, future, -INFINITY), -1), v);
}

void check_hidden(const Tensor& x, int64_t C, const char* op) {
  FATHOM_CHECK(x.dim() == 3 && x.size(2) == C && is_floating(x.dtype()), op, ": input ",
               x.desc(), " must be floating point [B, T, ", C, "]");
}

}  // namespace

// ---- shard specs ----

Tensor shard_of(const Tensor& full, ShardSpec spec, int rank, int size) {
  if (!spec.sharded()) return ops::clone(full);
  FATHOM_CHECK(spec.dim < full.dim() && spec.fused > 0 && size > 0 && rank >= 0 && rank < size,
               "shard_of: spec (dim ", spec.dim, ", fused ", spec.fused, ") or rank ", rank,
               " of ", size, " does not fit ", full.desc());
  int64_t n = full.size(spec.dim);
  FATHOM_CHECK(n % (spec.fused * size) == 0, "shard_of: dim ", spec.dim, " of ", full.desc(),
               " does not split into ", spec.fused, " x ", size, " equal blocks");
  int64_t sub = n / spec.fused, blk = sub / size;
  std::vector<Tensor> parts;
  for (int64_t j = 0; j < spec.fused; ++j)
    parts.push_back(ops::narrow(full, spec.dim, j * sub + rank * blk, blk));
  return ops::contiguous(ops::cat(parts, spec.dim));
}

Tensor gather_full(const Tensor& local, ShardSpec spec, comm::ProcessGroup& group) {
  int p = group.size();
  if (!spec.sharded() || p == 1) return ops::clone(local);
  FATHOM_CHECK(spec.dim < local.dim() && spec.fused > 0 && local.size(spec.dim) % spec.fused == 0,
               "gather_full: spec (dim ", spec.dim, ", fused ", spec.fused, ") does not fit ",
               local.desc());
  Tensor all = empty({p, local.numel()}, local.options());
  group.allgather(all, ops::contiguous(local))->wait();
  int64_t blk = local.size(spec.dim) / spec.fused;
  std::vector<Tensor> parts;
  for (int64_t j = 0; j < spec.fused; ++j)
    for (int r = 0; r < p; ++r)
      parts.push_back(ops::narrow(ops::view(ops::select(all, 0, r), local.shape()), spec.dim,
                                  j * blk, blk));
  return ops::contiguous(ops::cat(parts, spec.dim));
}

// ---- attention, MLP, block ----

TPAttention::TPAttention(const nn::GPTConfig& c, GroupPtr g) : Module("TPAttention") {
  FATHOM_CHECK(g != nullptr, "TPAttention: the tensor-parallel group is null");
  FATHOM_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, "TPAttention: n_embd ", c.n_embd,
               " is not divisible by n_head ", c.n_head);
  FATHOM_CHECK(c.n_head % g->size() == 0, "TPAttention: n_head ", c.n_head,
               " is not divisible by the tensor-parallel size ", g->size());
  n_head_local = c.n_head / g->size();
  head_dim = c.n_embd / c.n_head;
  recompute_core = c.recompute == nn::Recompute::selective;
  Generator* gen = &scratch_generator();
  qkv = register_module("qkv", std::make_shared<ColumnParallelLinear>(
                                   ParallelLinearOptions(c.n_embd, 3 * c.n_embd), g, gen));
  proj = register_module("proj", std::make_shared<RowParallelLinear>(
                                     ParallelLinearOptions(c.n_embd, c.n_embd), g, gen));
}

Tensor TPAttention::forward(const Tensor& x) {
  int64_t C = qkv->options.in_features();
  check_hidden(x, C, "TPAttention");
  int64_t B = x.size(0), T = x.size(1), H = n_head_local, D = head_dim, Cl = H * D;
  // Rank r's qkv rows are [q; k; v] of its own heads (shard_spec {0, 3}), so the dense
  // model's split into thirds and heads works unchanged on the local [B, T, 3 Cl].
  std::vector<Tensor> parts = split(qkv->forward(x), Cl, 2);  // 3 x [B, T, Cl]
  auto heads = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
  Tensor q = heads(parts[0]), k = heads(parts[1]), v = heads(parts[2]);  // [B, H/tp, T, D]
  Tensor y;
  if (recompute_core)
    y = autograd::recompute("attention core", [](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{attention_core(in[0], in[1], in[2])};
        }, {q, k, v})[0];
  else
    y = attention_core(q, k, v);
  return proj->forward(y.transpose(1, 2).contiguous().view({B, T, Cl}));  // all-reduced [B, T, C]
}

TPMLP::TPMLP(const nn::GPTConfig& c, GroupPtr g) : Module("TPMLP") {
  Generator* gen = &scratch_generator();
  fc = register_module("fc", std::make_shared<ColumnParallelLinear>(
                                 ParallelLinearOptions(c.n_embd, 4 * c.n_embd), g, gen));
  proj = register_module("proj", std::make_shared<RowParallelLinear>(
                                     ParallelLinearOptions(4 * c.n_embd, c.n_embd), g, gen));
}

Tensor TPMLP::forward(const Tensor& x) { return proj->forward(gelu(fc->forward(x))); }

TPBlock::TPBlock(const nn::GPTConfig& c, GroupPtr g)
    : Module("TPBlock"), recompute_block(c.recompute == nn::Recompute::full) {
  ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(c.n_embd)));
  attn = register_module("attn", std::make_shared<TPAttention>(c, g));
  ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(c.n_embd)));
  mlp = register_module("mlp", std::make_shared<TPMLP>(c, g));
}

Tensor TPBlock::forward(const Tensor& x) {
  // The rerun repeats the forward's all-reduces during backward; every rank reruns the same
  // blocks in the same order, so the collectives still line up.
  if (!recompute_block) return body(x);
  return autograd::recompute("TPBlock", [this](const Tensor& in) { return body(in); }, x);
}

Tensor TPBlock::body(const Tensor& x) {
  Tensor h = x + attn->forward(ln1->forward(x));
  return h + mlp->forward(ln2->forward(h));
}

// ---- the model ----

TPGPTOptions TPGPTOptions::stage(const nn::GPTConfig& c, int stage, int pp) {
  Mesh::check_model(c, pp, 1);
  FATHOM_CHECK(stage >= 0 && stage < pp, "TPGPTOptions::stage: stage ", stage,
               " is outside [0, ", pp, ")");
  int64_t per = c.n_layer / pp;
  return TPGPTOptions()
      .layer_begin(stage * per)
      .layer_end((stage + 1) * per)
      .has_embedding(stage == 0)
      .has_head(stage == pp - 1);
}

TPGPT::TPGPT(const nn::GPTConfig& c, GroupPtr g, TPGPTOptions o, Generator* gen)
    : Module("TPGPT"), config(c), options(o), tp_group(std::move(g)) {
  FATHOM_CHECK(tp_group != nullptr, "TPGPT: the tensor-parallel group is null");
  FATHOM_CHECK(c.vocab_size > 0 && c.block_size > 0 && c.n_layer > 0 && c.n_embd > 0,
               "TPGPT: vocab_size ", c.vocab_size, ", block_size ", c.block_size, ", n_layer ",
               c.n_layer, " and n_embd ", c.n_embd, " must all be positive");
  FATHOM_CHECK(c.dropout == 0.0, "TPGPT: dropout ", c.dropout,
               " is not supported (tensor parallelism needs one mask per tp group for the "
               "replicated activations and one per rank for the split ones: Megatron's RNG "
               "tracker, not implemented); use dropout 0");
  Mesh::check_model(c, 1, tp_group->size());
  if (o.layer_end() < 0) options.layer_end(c.n_layer);
  int64_t b = options.layer_begin(), e = options.layer_end();
  FATHOM_CHECK(0 <= b && b <= e && e <= c.n_layer, "TPGPT: layers [", b, ", ", e,
               ") are not a range of the model's ", c.n_layer, " layers");
  FATHOM_CHECK(b < e || options.has_embedding() || options.has_head(), "TPGPT: layers [", b,
               ", ", e, ") with neither the embedding nor the head would hold nothing");

  // Registered in nn::GPT's order, so named_parameters() lists the same names in the same order.
  Generator* scratch = &scratch_generator();
  if (options.has_embedding() || options.has_head())
    wte = register_module("wte", std::make_shared<VocabParallelEmbedding>(
                                     c.vocab_size, c.n_embd, tp_group, scratch));
  if (options.has_embedding())
    wpe = register_module("wpe", std::make_shared<nn::Embedding>(
                                     nn::EmbeddingOptions(c.block_size, c.n_embd), scratch));
  auto stack = register_module("blocks", std::make_shared<nn::Module>("Blocks"));
  for (int64_t i = b; i < e; ++i)
    blocks.push_back(stack->register_module(std::to_string(i), std::make_shared<TPBlock>(c, tp_group)));
  if (options.has_head())
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(c.n_embd)));

  // The dense model from the same draws, whatever tp: every rank builds it whole and keeps its
  // slices (the dense model's memory, once).
  nn::GPTConfig dense = c;
  dense.recompute = nn::Recompute::none;
  nn::GPT full(dense, gen);
  load_full_state_dict(full.state_dict());
}

Tensor TPGPT::embed(const Tensor& idx) {
  FATHOM_CHECK(wpe, "TPGPT::embed: this stage has no embedding (has_embedding false)");
  FATHOM_CHECK(idx.dim() == 2 && (idx.dtype() == DType::i64 || idx.dtype() == DType::i32),
               "TPGPT: idx ", idx.desc(), " must be [B, T] integer token ids");
  int64_t T = idx.size(1);
  FATHOM_CHECK(T <= config.block_size, "TPGPT: sequence length ", T, " of idx ", idx.desc(),
               " exceeds block_size ", config.block_size);
  Tensor pos = arange(T, {DType::i64, idx.device()});
  return wte->forward(idx) + wpe->forward(pos);  // [B, T, C] + [T, C]
}

Tensor TPGPT::run_blocks(const Tensor& x) {
  check_hidden(x, config.n_embd, "TPGPT::run_blocks");
  Tensor h = x;
  for (auto& blk : blocks) h = blk->forward(h);
  return h;
}

Tensor TPGPT::logits(const Tensor& x) {
  FATHOM_CHECK(ln_f, "TPGPT::logits: this stage has no head (has_head false)");
  check_hidden(x, config.n_embd, "TPGPT::logits");
  // Each rank's logits use its vocabulary rows only, so the gradient reaching ln_f's output
  // is partial on each rank: copy_to_tp_region sums it in backward.
  Tensor h = copy_to_tp_region(ln_f->forward(x), tp_group);
  return matmul(h, wte->weight.t());  // [B, T, V / tp]: the tied output projection
}

Tensor TPGPT::loss(const Tensor& x, const Tensor& targets) {
  return vocab_parallel_cross_entropy(logits(x), targets, tp_group);
}

Tensor TPGPT::forward(const Tensor& input) {
  Tensor x = options.has_embedding() ? embed(input) : input;
  x = run_blocks(x);
  return options.has_head() ? logits(x) : x;
}

Tensor TPGPT::forward(const Tensor& input, const Tensor& targets) {
  FATHOM_CHECK(ln_f, "TPGPT::forward(input, targets): this stage has no head (has_head false)");
  Tensor x = options.has_embedding() ? embed(input) : input;
  return loss(run_blocks(x), targets);
}

ShardSpec TPGPT::shard_spec(const std::string& name) {
  if (name == "wte.weight") return {0, 1};
  if (ends_with(name, ".attn.qkv.weight") || ends_with(name, ".attn.qkv.bias")) return {0, 3};
  if (ends_with(name, ".mlp.fc.weight") || ends_with(name, ".mlp.fc.bias")) return {0, 1};
  if (ends_with(name, ".attn.proj.weight") || ends_with(name, ".mlp.proj.weight")) return {1, 1};
  return {};
}

void TPGPT::load_full_state_dict(const nn::StateDict& full) {
  int r = tp_group->rank(), p = tp_group->size();
  std::vector<std::pair<Tensor, Tensor>> copies;
  std::string problems;
  for (auto& [name, param] : named_parameters()) {
    auto it = full.find(name);
    if (it == full.end()) {
      problems += "\n  missing " + name;
      continue;
    }
    ShardSpec spec = shard_spec(name);
    bool fits = it->second.dim() == param.dim() &&
                (!spec.sharded() || it->second.size(spec.dim) % (spec.fused * p) == 0);
    Tensor piece = fits ? shard_of(it->second, spec, r, p) : Tensor();
    if (!fits || piece.shape() != param.shape()) {
      problems += "\n  " + name + ": dense " + it->second.desc() + " does not give this rank's " +
                  param.desc() + " (rank " + std::to_string(r) + " of " + std::to_string(p) + ")";
      continue;
    }
    copies.emplace_back(param, piece);
  }
  FATHOM_CHECK(problems.empty(), "TPGPT::load_full_state_dict:", problems);
  NoGradGuard no_grad;
  for (auto& [param, piece] : copies) ops::copy_(param, piece);
}

nn::StateDict TPGPT::full_state_dict() const {
  nn::StateDict out;
  for (auto& [name, param] : named_parameters())
    out[name] = gather_full(param.detach(), shard_spec(name), *tp_group);
  return out;
}

nn::StateDict TPGPT::full_grads() const {
  nn::StateDict out;
  for (auto& [name, param] : named_parameters()) {
    Tensor g = param.grad();
    FATHOM_CHECK(g.defined(), "TPGPT::full_grads: ", name, " has no gradient (run backward first)");
    out[name] = gather_full(g, shard_spec(name), *tp_group);
  }
  return out;
}

std::vector<Tensor> TPGPT::sharded_parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, param] : named_parameters())
    if (shard_spec(name).sharded()) out.push_back(param);
  return out;
}

std::vector<Tensor> TPGPT::replicated_parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, param] : named_parameters())
    if (!shard_spec(name).sharded()) out.push_back(param);
  return out;
}

}  // namespace fathom::parallel
