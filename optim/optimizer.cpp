#include "fathom/optim/optimizer.h"

#include <cstdio>
#include <sstream>
#include <typeinfo>

#include "fathom/core/memory.h"
#include "fathom/core/phase.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/snapshot.h"

namespace fathom::optim {

namespace {

std::vector<ParamGroup> one_group(NamedParams params) {
  std::vector<ParamGroup> g;
  g.emplace_back(std::move(params));
  return g;
}

// FNV-1a over the group's names, so a state saved with another grouping is refused. Kept to
// 53 bits: integer tensors round-trip through double.
int64_t names_hash(const NamedParams& params) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [n, p] : params) {
    for (char c : n + '\0') h = (h ^ uint8_t(c)) * 1099511628211ull;
  }
  return int64_t(h >> 11);
}

std::string group_key(size_t g, const char* field) {
  return "param_groups." + std::to_string(g) + "." + field;
}

}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups, const OptimizerOptions& defaults)
    : kind_(defaults.optimizer()), defaults_(defaults.clone()), groups_(std::move(groups)) {
  defaults_->check(kind_);
  std::map<std::string, size_t> seen;  // name -> group
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& g = groups_[gi];
    std::string where = kind_ + " param group " + std::to_string(gi);
    if (!g.options_) {
      g.options_ = defaults_->clone();
    } else {
      FATHOM_CHECK(typeid(*g.options_) == typeid(*defaults_), where, " has ", g.options_->optimizer(),
                   " options; give it ", kind_, "Options");
      g.options_->inherit(*defaults_);
      g.options_->check(where);
    }
    for (const auto& [name, p] : g.params_) {
      FATHOM_CHECK(p.defined() && is_floating(p.dtype()), kind_, ": parameter '", name,
                   "' must be a floating-point tensor, got ", p.desc());
      FATHOM_CHECK(p.is_contiguous(), kind_, ": parameter '", name, "' ", p.desc(), " is not contiguous");
      auto [it, fresh] = seen.emplace(name, gi);
      FATHOM_CHECK(fresh, kind_, ": parameter '", name, "' appears twice (in param group ", it->second,
                   " and param group ", gi, "); each parameter belongs to one group");
      params_.push_back({name, p});
      group_of_.push_back(gi);
    }
  }
  state_.resize(params_.size());
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

void Optimizer::set_grad_source(const std::string& name, Tensor grad) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first != name) continue;
    FATHOM_CHECK(!grad.defined() || (grad.shape() == params_[i].second.shape() &&
                                     grad.device() == params_[i].second.device() && grad.is_contiguous()),
                 kind_, ": gradient source ", grad.desc(), " does not fit parameter '", name, "' ",
                 params_[i].second.desc());
    state_[i].grad_source = std::move(grad);
    return;
  }
  detail::fail(kind_, ": no parameter named '", name, "'");
}

std::vector<Tensor> Optimizer::gradients() const {
  std::vector<Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    out.push_back(state_[i].grad_source.defined() ? state_[i].grad_source : params_[i].second.grad());
  return out;
}

std::map<std::string, Tensor> Optimizer::reshard_state_dict(
    int, const std::function<std::map<std::string, Tensor>(int)>&) const {
  detail::fail(kind_, ": its state is not sharded (every rank holds all of it), so there is nothing "
               "to reshard; load a saved state with load_state_dict");
}

void Optimizer::step(double grad_scale) {
  phase::Scope phase_scope(phase::Phase::optimizer);
  await_snapshots();  // an async checkpoint may still be copying parameters or state
  // Slots batched by (group, step count), so each batch is one fused call with one set of
  // hyperparameters (usually one batch per group).
  std::map<std::pair<size_t, int64_t>, std::vector<ParamSlot>> batches;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    State& s = state_[i];
    Tensor g = s.grad_source.defined() ? s.grad_source : p.grad();
    if (!g.defined()) continue;
    FATHOM_CHECK(g.shape() == p.shape() && g.device() == p.device(), kind_, ": gradient ",
                 g.desc(), " does not fit parameter '", params_[i].first, "' ", p.desc());
    const OptimizerOptions& o = *groups_[group_of_[i]].options_;
    if (s.step == 0) {
      memory::Scope ledger(memory::Category::optimizer_state);
      if (is_half(p.dtype())) s.master = ops::to(p, DType::f32);
      init_state(s, p, o);
    }
    batches[{group_of_[i], ++s.step}].push_back({p, ops::contiguous(g), s.master, s.exp_avg, s.exp_avg_sq});
  }
  ++step_count_;
  for (const auto& [key, slots] : batches) update(slots, key.second, grad_scale, *groups_[key.first].options_);
  if (unused_warning_.empty()) warn_unused();
}

void Optimizer::warn_unused() {
  // A parameter that never stepped has had no gradient in any step (a step skipped by the loss
  // scaler never reaches here). Frozen ones (requires_grad false, no grad source) are meant so.
  std::vector<std::string> names;
  for (size_t i = 0; i < params_.size(); ++i)
    if (state_[i].step == 0 && (params_[i].second.requires_grad() || state_[i].grad_source.defined()))
      names.push_back(params_[i].first);
  if (names.empty()) return;
  std::ostringstream m;
  m << kind_ << ": " << names.size() << " of " << params_.size() << " parameters have received no "
    << "gradient in any of the " << step_count_ << " step(s) so far, so they are not being trained: ";
  for (size_t i = 0; i < names.size() && i < 5; ++i) m << (i ? ", '" : "'") << names[i] << "'";
  if (names.size() > 5) m << " and " << names.size() - 5 << " more";
  m << ". If they are meant to stay fixed, call requires_grad_(false) on them or leave them out of "
       "the optimizer; if they should train, check that the loss depends on them; under "
       "DistributedDataParallel with bf16/f16 parameters, call ddp.attach(optimizer) so the "
       "optimizer reads DDP's f32 gradients.";
  unused_warning_ = m.str();
  std::fprintf(stderr, "fathom: warning: %s\n", unused_warning_.c_str());
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    const State& s = state_[i];
    if (s.master.defined()) out[n + ".master"] = s.master;
    if (s.exp_avg.defined()) out[n + ".exp_avg"] = s.exp_avg;
    if (s.exp_avg_sq.defined()) out[n + ".exp_avg_sq"] = s.exp_avg_sq;
    if (s.step) out[n + ".step"] = from_vector(std::vector<int64_t>{s.step}, {});
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::vector<double> v;
    for (const auto& [k, x] : groups_[g].options_->fields()) v.push_back(x);
    out[group_key(g, "options")] = from_vector(v, {int64_t(v.size())}, DType::f64);
    out[group_key(g, "params")] = from_vector(std::vector<int64_t>{names_hash(groups_[g].params_)}, {});
  }
  out["step"] = from_vector(std::vector<int64_t>{step_count_}, {});
  return out;
}

void Optimizer::check_state_dict(const std::map<std::string, Tensor>& state) const {
  auto step_it = state.find("step");
  FATHOM_CHECK(step_it != state.end() && step_it->second.numel() == 1, kind_,
               ": state has no 'step' entry");
  size_t used = 1;
  // Groups first: their options must match this optimizer's, except lr, which is restored.
  FATHOM_CHECK(!state.count(group_key(groups_.size(), "options")), kind_, ": the state has more "
               "param groups than this optimizer's ", groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto opt_it = state.find(group_key(g, "options"));
    auto names_it = state.find(group_key(g, "params"));
    FATHOM_CHECK(opt_it != state.end() && names_it != state.end(), kind_, ": state has no '",
                 group_key(g, "options"), "'/'", group_key(g, "params"), "' entries; this optimizer has ",
                 groups_.size(), " param groups");
    FATHOM_CHECK(names_it->second.numel() == 1 && names_it->second.item<int64_t>() == names_hash(groups_[g].params_),
                 kind_, ": param group ", g, " of the state holds other parameters than this optimizer's");
    auto fields = groups_[g].options_->fields();
    std::vector<double> saved = to_vector(opt_it->second);
    FATHOM_CHECK(saved.size() == fields.size(), kind_, ": state's param group ", g, " has ",
                 saved.size(), " options, expected ", fields.size());
    for (size_t k = 1; k < fields.size(); ++k)
      FATHOM_CHECK(saved[k] == fields[k].second, kind_, ": param group ", g, " option ", fields[k].first,
                   " is ", saved[k], " in the state but ", fields[k].second, " in this optimizer");
    FATHOM_CHECK(saved[0] >= 0, kind_, ": state's param group ", g, " lr ", saved[0], " is negative");
    used += 2;
  }
  for (const auto& [n, p] : params_) {
    for (const char* field : {"master", "exp_avg", "exp_avg_sq"}) {
      auto it = state.find(n + "." + field);
      if (it == state.end()) continue;
      FATHOM_CHECK(it->second.shape() == p.shape() && it->second.dtype() == DType::f32, kind_,
                   ": state '", it->first, "' is ", it->second.desc(), ", expected ",
                   shape_str(p.shape()), " f32");
      ++used;
    }
    if (auto it = state.find(n + ".step"); it != state.end()) {
      FATHOM_CHECK(it->second.numel() == 1, kind_, ": state '", it->first, "' must be one number");
      ++used;
    }
  }
  FATHOM_CHECK(used == state.size(), kind_, ": state has ", state.size() - used,
               " entries that match no parameter or param group of this optimizer");
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  Optimizer::check_state_dict(state);  // this class's checks: a derived one has checked its own keys
  await_snapshots();
  memory::Scope ledger(memory::Category::optimizer_state);
  std::vector<State> next(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [n, p] = params_[i];
    auto take = [&](const char* field, Tensor& into) {
      auto it = state.find(n + "." + field);
      if (it == state.end()) return;
      into = ops::contiguous(ops::to(it->second, p.device()));
      if (into.is_same(it->second)) into = ops::clone(into);
    };
    take("master", next[i].master);
    take("exp_avg", next[i].exp_avg);
    take("exp_avg_sq", next[i].exp_avg_sq);
    if (auto it = state.find(n + ".step"); it != state.end()) next[i].step = it->second.item<int64_t>();
    next[i].grad_source = state_[i].grad_source;
  }
  state_ = std::move(next);
  step_count_ = state.at("step").item<int64_t>();
  for (size_t g = 0; g < groups_.size(); ++g)
    groups_[g].options_->set_lr(to_vector(state.at(group_key(g, "options")))[0]);
}

namespace {

void sgd_update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale, const SGDOptions& o) {
  ops::sgd_step(slots, {o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov(), step == 1,
                        grad_scale});
}

template <class O>
void adam_update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale, const O& o,
                 bool decoupled) {
  ops::adam_step(slots, {o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()), o.eps(),
                         o.weight_decay(), decoupled, step, grad_scale});
}

void adam_state(Tensor& exp_avg, Tensor& exp_avg_sq, const Tensor& p) {
  exp_avg = zeros(p.shape(), {DType::f32, p.device()});
  exp_avg_sq = zeros(p.shape(), {DType::f32, p.device()});
}

}  // namespace

SGD::SGD(NamedParams params, const SGDOptions& d) : SGD(one_group(std::move(params)), d) {}
SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& d) : Optimizer(std::move(groups), d) {}

void SGD::init_state(State& s, const Tensor& p, const OptimizerOptions& o) {
  if (static_cast<const SGDOptions&>(o).momentum() != 0) s.exp_avg = zeros(p.shape(), {DType::f32, p.device()});
}

void SGD::update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale, const OptimizerOptions& o) {
  sgd_update(slots, step, grad_scale, static_cast<const SGDOptions&>(o));
}

Adam::Adam(NamedParams params, const AdamOptions& d) : Adam(one_group(std::move(params)), d) {}
Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& d) : Optimizer(std::move(groups), d) {}

void Adam::init_state(State& s, const Tensor& p, const OptimizerOptions&) {
  adam_state(s.exp_avg, s.exp_avg_sq, p);
}

void Adam::update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale, const OptimizerOptions& o) {
  adam_update(slots, step, grad_scale, static_cast<const AdamOptions&>(o), false);
}

AdamW::AdamW(NamedParams params, const AdamWOptions& d) : AdamW(one_group(std::move(params)), d) {}
AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& d) : Optimizer(std::move(groups), d) {}

void AdamW::init_state(State& s, const Tensor& p, const OptimizerOptions&) {
  adam_state(s.exp_avg, s.exp_avg_sq, p);
}

void AdamW::update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale, const OptimizerOptions& o) {
  adam_update(slots, step, grad_scale, static_cast<const AdamWOptions&>(o), true);
}

}  // namespace fathom::optim
