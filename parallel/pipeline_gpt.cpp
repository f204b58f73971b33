#include "fathom/parallel/pipeline_gpt.h"

#include <string>

#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::parallel {

namespace {

// Consecutive blocks registered under their index in the full model ("3", "4", ...), so the
// chunk's parameter names are the full model's.
class BlockRange : public nn::Module {
 public:
  BlockRange() : Module("BlockRange") {}
  void add(int64_t index, std::shared_ptr<nn::Module> block) {
    blocks_.push_back(register_module(std::to_string(index), std::move(block)));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& b : blocks_) h = b->forward(h);
    return h;
  }

 private:
  std::vector<std::shared_ptr<nn::Module>> blocks_;
};

}  // namespace

GPTChunk::GPTChunk(nn::GPT& full, int index_, int num_chunks_, std::shared_ptr<nn::Embedding> tied)
    : Module("GPTChunk"), index(index_), num_chunks(num_chunks_),
      block_size(full.config.block_size) {
  int64_t L = full.config.n_layer;
  FATHOM_CHECK(num_chunks >= 1 && L % num_chunks == 0, "split_gpt: n_layer ", L,
               " cannot be cut into ", num_chunks, " equal model chunks (p * v); choose p and v "
               "so that p * v divides n_layer");
  num_blocks = L / num_chunks;
  first_block = index * num_blocks;
  // Registration order follows nn::GPT's (wte, wpe, drop, blocks, ln_f).
  if (index == 0) {
    wte = register_module("wte", full.wte);
    wpe = register_module("wpe", full.wpe);
    drop = register_module("drop", full.drop);
  }
  auto range = std::make_shared<BlockRange>();
  auto children = full.blocks->named_children();
  for (int64_t i = first_block; i < first_block + num_blocks; ++i) range->add(i, children[size_t(i)].second);
  blocks = register_module("blocks", range);
  if (index == num_chunks - 1) {
    ln_f = register_module("ln_f", full.ln_f);
    if (index != 0) wte = register_module("wte", std::move(tied));
  }
}

Tensor GPTChunk::forward(const Tensor& x) {
  Tensor h = x;
  if (index == 0) {
    FATHOM_CHECK(x.dim() == 2 && (x.dtype() == DType::i64 || x.dtype() == DType::i32) &&
                     x.size(1) <= block_size,
                 "GPTChunk 0: idx ", x.desc(), " must be [B, T] integer token ids, T <= ", block_size);
    Tensor pos = arange(x.size(1), {DType::i64, x.device()});
    h = drop->forward(wte->forward(x) + wpe->forward(pos));  // [B, T, C] + [T, C]
  }
  h = blocks->forward(h);
  if (index == num_chunks - 1) h = matmul(ln_f->forward(h), wte->weight.t());  // [B, T, V]
  return h;
}

nn::NamedTensors GPTStages::named_parameters() const {
  nn::NamedTensors out;
  std::vector<const TensorImpl*> seen;
  for (const auto& c : chunks)
    for (auto& [name, t] : c->named_parameters()) {
      const TensorImpl* id = &t.impl();
      bool dup = false;
      for (const TensorImpl* s : seen) dup = dup || s == id;
      if (dup) continue;  // p = 1, v > 1: the first and last chunk share wte
      seen.push_back(id);
      out.emplace_back(name, t);
    }
  return out;
}

Tensor GPTStages::wte_weight() const {
  for (const auto& c : chunks)
    if (auto* g = dynamic_cast<GPTChunk*>(c.get()); g && g->wte) return g->wte->weight;
  return {};
}

void GPTStages::allreduce_tied_embedding(comm::ProcessGroup& pp) const {
  FATHOM_CHECK(pp.size() == pp_size && pp.rank() == pp_rank, "allreduce_tied_embedding: group ",
               pp.name(), " has rank ", pp.rank(), " of ", pp.size(), ", but the stages were "
               "split for rank ", pp_rank, " of ", pp_size);
  if (pp_size == 1 || (pp_rank != 0 && pp_rank != pp_size - 1)) return;
  Tensor w = wte_weight();
  Tensor g = w.grad();
  FATHOM_CHECK(g.defined(), "allreduce_tied_embedding: wte.weight on pp rank ", pp_rank,
               " has no gradient; call it after the pipeline step's backward");
  int peer = pp_rank == 0 ? pp_size - 1 : 0;
  constexpr int kTag = 31999;  // above every tag a Pipeline uses (it allows m * v <= 15999)
  Tensor mine = ops::contiguous(g.detach()).clone(), theirs = empty(g.shape(), g.options());
  comm::wait_all({pp.send(mine, peer, kTag), pp.recv(theirs, peer, kTag)});
  NoGradGuard no_grad;
  // a + b on one side and b + a on the other: IEEE addition commutes, so both copies get
  // bitwise the same gradient and stay bitwise equal.
  ops::add_(g, theirs);
}

GPTStages split_gpt(const nn::GPTConfig& config, uint64_t seed, int pp_size, int pp_rank,
                    int virtual_stages) {
  FATHOM_CHECK(pp_size >= 1 && pp_rank >= 0 && pp_rank < pp_size && virtual_stages >= 1,
               "split_gpt: pp rank ", pp_rank, " of ", pp_size, " with ", virtual_stages,
               " chunks per rank is not a valid split");
  int K = pp_size * virtual_stages;
  FATHOM_CHECK(config.n_layer % K == 0, "split_gpt: n_layer ", config.n_layer, " is not a "
               "multiple of p * v = ", pp_size, " * ", virtual_stages, " = ", K,
               "; every model chunk must hold the same number of blocks");
  Generator gen(seed);
  nn::GPT full(config, &gen);
  GPTStages st;
  st.config = config;
  st.pp_size = pp_size;
  st.pp_rank = pp_rank;
  // The last stage's wte: the same module when it is on the first stage's rank, else a copy.
  std::shared_ptr<nn::Embedding> last_wte = full.wte;
  if (pp_size > 1 && pp_rank == pp_size - 1) {
    Generator scratch(0);  // the copy's own init draws are overwritten at once
    last_wte = std::make_shared<nn::Embedding>(full.wte->options, &scratch);
    NoGradGuard no_grad;
    ops::copy_(last_wte->weight, full.wte->weight);
  }
  for (int c = 0; c < virtual_stages; ++c)
    st.chunks.push_back(std::make_shared<GPTChunk>(full, c * pp_size + pp_rank, K, last_wte));
  return st;
}

Tensor gpt_loss(const Tensor& logits, const Tensor& targets) { return cross_entropy(logits, targets); }

}  // namespace fathom::parallel
