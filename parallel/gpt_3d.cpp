#include "fathom/parallel/gpt_3d.h"

#include <string>

#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::parallel {

namespace {

constexpr int kTiedTag = 31999;   // above every tag a Pipeline uses for m * v <= 15999
constexpr int kGatherTag = 31998;

// The pp rank holding the dense parameter `name` (wte: the first stage's, the copy aside).
int owner_stage(const std::string& name, const nn::GPTConfig& c, int p, int v) {
  if (name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0) return 0;
  if (name.rfind("ln_f.", 0) == 0) return p - 1;
  FATHOM_CHECK(name.rfind("blocks.", 0) == 0, "GPT3D: no stage holds parameter '", name, "'");
  int64_t layer = std::stoll(name.substr(7));
  int64_t per = c.n_layer / (int64_t(p) * v);
  return int((layer / per) % p);
}

}  // namespace

GPT3D::GPT3D(const nn::GPTConfig& c, const Mesh& mesh, GPT3DOptions o, const Generator& gen)
    : config(c), options(o), mesh_(mesh) {
  int p = mesh.pp(), v = o.virtual_stages(), m = o.microbatches();
  FATHOM_CHECK(v >= 1 && m >= 1 && o.microbatch_size() >= 1, "GPT3D: virtual_stages ", v,
               ", microbatches ", m, " and microbatch_size ", o.microbatch_size(),
               " must all be >= 1");
  FATHOM_CHECK(v == 1 || p > 1, "GPT3D: virtual_stages ", v, " with pp = 1 would put the first "
               "and last model chunk (both holding wte) on one rank; use virtual_stages 1 or pp > 1");
  FATHOM_CHECK(c.n_layer % (int64_t(p) * v) == 0, "GPT3D: n_layer ", c.n_layer, " is not a "
               "multiple of pp * virtual_stages = ", p, " * ", v, " = ", p * v,
               "; every model chunk must hold the same number of blocks");
  mesh.check_model(c);
  int64_t T = o.seq_len() > 0 ? o.seq_len() : c.block_size;
  FATHOM_CHECK(T <= c.block_size, "GPT3D: seq_len ", T, " exceeds block_size ", c.block_size);
  std::vector<std::shared_ptr<nn::Module>> modules;
  for (int k = 0; k < v; ++k) {
    Generator g = gen;  // every chunk keeps its slice of the same dense draws
    auto chunk = std::make_shared<TPGPT>(c, mesh.tp_group(),
                                         TPGPTOptions::stage(c, k * p + mesh.pp_rank(), p * v), &g);
    chunk->to(o.device());
    chunk->to(o.dtype());
    chunks.push_back(chunk);
    modules.push_back(chunk);
  }
  GroupPtr tp = mesh.tp_group();
  PipelineLoss loss = [this, tp](const Tensor& logits, const Tensor& targets) {
    Tensor l = vocab_parallel_cross_entropy(logits, targets, tp);
    return loss_scale_ == 1.0 ? l : l * loss_scale_;
  };
  auto po = PipelineOptions().schedule(o.schedule()).microbatches(m)
                .activation_shape({o.microbatch_size(), T, c.n_embd})
                .activation_dtype(o.dtype()).activation_device(o.device());
  if (mesh.dp() > 1) {
    for (auto& chunk : chunks)
      ddps_.push_back(std::make_unique<DistributedDataParallel>(chunk, mesh.dp_group(), o.ddp()));
    no_sync_ = std::vector<std::optional<DistributedDataParallel::NoSync>>(chunks.size());
    // The chunk's last backward of the step adds its gradients and reduces the sum over dp.
    po.before_last_backward([this](int chunk) { no_sync_[size_t(chunk)].reset(); });
  }
  pipe_ = std::make_unique<Pipeline>(*mesh.pp_group(), modules, loss, po);
}

double GPT3D::forward_backward(const std::vector<Tensor>& inputs,
                               const std::vector<Tensor>& targets, double loss_scale) {
  FATHOM_CHECK(loss_scale > 0, "GPT3D::forward_backward: loss_scale ", loss_scale,
               " must be positive");
  loss_scale_ = loss_scale;
  for (size_t c = 0; c < ddps_.size(); ++c) {
    ddps_[c]->prepare_forward();
    no_sync_[c].emplace(*ddps_[c]);
  }
  double loss = pipe_->step(inputs, targets) / loss_scale;
  for (size_t c = 0; c < no_sync_.size(); ++c)
    FATHOM_CHECK(!no_sync_[c].has_value(), "GPT3D: chunk ", c, "'s last backward never ran, so "
                 "its gradients were not reduced over dp");
  sum_tied_embedding();
  if (mesh_.dp() > 1) {
    Tensor l = full({1}, loss, DType::f64);
    mesh_.dp_group()->allreduce(l, comm::ReduceOp::avg)->wait();
    loss = to_vector(l)[0];
  }
  return loss;
}

void GPT3D::sum_tied_embedding() {
  int p = mesh_.pp(), r = mesh_.pp_rank();
  if (p == 1 || (r != 0 && r != p - 1)) return;
  // Rank 0's chunk 0 holds the embedding, rank p - 1's last chunk the head with its copy.
  Tensor w = (r == 0 ? chunks.front() : chunks.back())->wte->weight;
  Tensor g = w.grad();
  FATHOM_CHECK(g.defined(), "GPT3D: wte.weight on pp rank ", r, " has no gradient after the "
               "pipeline's backward");
  Tensor mine = ops::contiguous(g.detach()).clone(), theirs = empty(g.shape(), g.options());
  int peer = r == 0 ? p - 1 : 0;
  comm::wait_all({mesh_.pp_group()->send(mine, peer, kTiedTag),
                  mesh_.pp_group()->recv(theirs, peer, kTiedTag)});
  NoGradGuard no_grad;
  ops::add_(g, theirs);  // a + b here, b + a there: bitwise the same sum on both
}

optim::NamedParams GPT3D::named_parameters() const {
  optim::NamedParams out;
  for (const auto& c : chunks)
    for (auto& np : c->named_parameters()) out.push_back(np);
  return out;
}

int64_t GPT3D::num_local_parameters() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += c->num_parameters();
  return n;
}

MeshNorm GPT3D::mesh_norm() const {
  MeshNorm n;
  n.is_sharded = [](const std::string& name) { return TPGPT::shard_spec(name).sharded(); };
  n.tp_group = mesh_.tp_group();
  n.disjoint_groups = {mesh_.pp_group()};
  // The last stage's wte is a copy of the first's (the same gradient after the tied sum).
  bool copy = mesh_.pp() > 1 && mesh_.pp_rank() == mesh_.pp() - 1;
  n.counted = [copy](const std::string& name) { return !(copy && name == "wte.weight"); };
  return n;
}

nn::StateDict GPT3D::full_state_dict_on_root() const {
  nn::StateDict mine;
  for (const auto& c : chunks)
    for (auto& [name, t] : c->full_state_dict()) mine[name] = t;  // collective over tp
  MeshCoord at = mesh_.coord();
  if (at.dp != 0 || at.tp != 0) return {};
  comm::ProcessGroup& pp = *mesh_.pp_group();  // the (dp 0, tp 0) stages, in order
  int p = mesh_.pp(), v = options.virtual_stages();
  if (at.pp != 0) {
    // Sorted names on both sides, one tag: MPI keeps a sender's messages in order.
    std::vector<comm::WorkPtr> sends;
    for (auto& [name, t] : mine)
      if (owner_stage(name, config, p, v) == at.pp)
        sends.push_back(pp.send(ops::contiguous(t.detach()), 0, kGatherTag));
    comm::wait_all(sends);
    return {};
  }
  nn::GPTConfig dense = config;
  dense.recompute = nn::Recompute::none;
  Generator scratch(0);
  nn::GPT shape_of(dense, &scratch);  // names and shapes of the dense model
  nn::StateDict dense_params;  // sorted, as the senders' maps
  for (auto& [name, t] : shape_of.named_parameters()) dense_params[name] = t;
  nn::StateDict out;
  for (auto& [name, t] : dense_params) {
    int owner = owner_stage(name, config, p, v);
    if (owner == 0) {
      auto it = mine.find(name);
      FATHOM_CHECK(it != mine.end(), "GPT3D: stage 0 lacks ", name);
      out[name] = it->second;
      continue;
    }
    Tensor buf = empty(t.shape(), {options.dtype(), options.device()});
    pp.recv(buf, owner, kGatherTag)->wait();
    out[name] = buf;
  }
  return out;
}

}  // namespace fathom::parallel
