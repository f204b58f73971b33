#include "fathom/optim/optimizer.h"

#include <set>

#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::optim {

Optimizer::Optimizer(NamedParams params, double lr) : kind_("optimizer"), lr_(lr), params_(std::move(params)) {
  FATHOM_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got ", lr);
  std::set<std::string> seen;
  for (const auto& [name, p] : params_) {
    FATHOM_CHECK(p.defined() && is_floating(p.dtype()), "optimizer: parameter '", name,
                 "' must be a floating-point tensor, got ", p.desc());
    FATHOM_CHECK(p.is_contiguous(), "optimizer: parameter '", name, "' ", p.desc(),
                 " is not contiguous");
    FATHOM_CHECK(seen.insert(name).second, "optimizer: parameter name '", name, "' appears twice");
  }
  state_.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  FATHOM_CHECK(lr >= 0, kind_, ": learning rate must be >= 0, got ", lr);
  lr_ = lr;
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

void Optimizer::step(double grad_scale) {
  // Slots grouped by their step count, so each group is one fused call (usually one group).
  std::map<int64_t, std::vector<ParamSlot>> groups;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    State& s = state_[i];
    Tensor g = s.grad_source.defined() ? s.grad_source : p.grad();
    if (!g.defined()) continue;
    FATHOM_CHECK(g.shape() == p.shape() && g.device() == p.device(), kind_, ": gradient ",
                 g.desc(), " does not fit parameter '", params_[i].first, "' ", p.desc());
    if (s.step == 0) {
      if (is_half(p.dtype())) s.master = ops::to(p, DType::f32);
      init_state(s, p);
    }
    groups[++s.step].push_back({p, ops::contiguous(g), s.master, s.exp_avg, s.exp_avg_sq});
  }
  ++step_count_;
  for (const auto& [step, slots] : groups) update(slots, step, grad_scale);
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
  out["step"] = from_vector(std::vector<int64_t>{step_count_}, {});
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto step_it = state.find("step");
  FATHOM_CHECK(step_it != state.end() && step_it->second.numel() == 1, kind_,
               ": state has no 'step' entry");
  std::vector<State> next(params_.size());
  size_t used = 1;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [n, p] = params_[i];
    auto take = [&](const char* field, Tensor& into) {
      auto it = state.find(n + "." + field);
      if (it == state.end()) return;
      FATHOM_CHECK(it->second.shape() == p.shape() && it->second.dtype() == DType::f32, kind_,
                   ": state '", it->first, "' is ", it->second.desc(), ", expected ",
                   shape_str(p.shape()), " f32");
      into = ops::contiguous(ops::to(it->second, p.device()));
      if (into.is_same(it->second)) into = ops::clone(into);
      ++used;
    };
    take("master", next[i].master);
    take("exp_avg", next[i].exp_avg);
    take("exp_avg_sq", next[i].exp_avg_sq);
    if (auto it = state.find(n + ".step"); it != state.end()) {
      FATHOM_CHECK(it->second.numel() == 1, kind_, ": state '", it->first, "' must be one number");
      next[i].step = it->second.item<int64_t>();
      ++used;
    }
    next[i].grad_source = state_[i].grad_source;
  }
  FATHOM_CHECK(used == state.size(), kind_, ": state has ", state.size() - used,
               " entries that match no parameter of this optimizer");
  state_ = std::move(next);
  step_count_ = step_it->second.item<int64_t>();
}

SGD::SGD(NamedParams params, SGDOptions o) : Optimizer(std::move(params), o.lr), o_(o) {
  kind_ = "SGD";
  FATHOM_CHECK(o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
  FATHOM_CHECK(o.weight_decay >= 0, "SGD: weight_decay must be >= 0, got ", o.weight_decay);
  FATHOM_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
               "SGD: nesterov needs momentum > 0 and dampening 0");
}

void SGD::init_state(State& s, const Tensor& p) {
  if (o_.momentum != 0) s.exp_avg = zeros(p.shape(), {DType::f32, p.device()});
}

void SGD::update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale) {
  ops::sgd_step(slots, {lr_, o_.momentum, o_.dampening, o_.weight_decay, o_.nesterov, step == 1,
                        grad_scale});
}

Adam::Adam(NamedParams params, AdamOptions o, bool decoupled)
    : Optimizer(std::move(params), o.lr), o_(o), decoupled_(decoupled) {
  kind_ = decoupled ? "AdamW" : "Adam";
  FATHOM_CHECK(o.beta1 >= 0 && o.beta1 < 1, kind_, ": beta1 must be in [0, 1), got ", o.beta1);
  FATHOM_CHECK(o.beta2 >= 0 && o.beta2 < 1, kind_, ": beta2 must be in [0, 1), got ", o.beta2);
  FATHOM_CHECK(o.eps >= 0, kind_, ": eps must be >= 0, got ", o.eps);
  FATHOM_CHECK(o.weight_decay >= 0, kind_, ": weight_decay must be >= 0, got ", o.weight_decay);
}

void Adam::init_state(State& s, const Tensor& p) {
  s.exp_avg = zeros(p.shape(), {DType::f32, p.device()});
  s.exp_avg_sq = zeros(p.shape(), {DType::f32, p.device()});
}

void Adam::update(const std::vector<ParamSlot>& slots, int64_t step, double grad_scale) {
  ops::adam_step(slots, {lr_, o_.beta1, o_.beta2, o_.eps, o_.weight_decay, decoupled_, step,
                         grad_scale});
}

}  // namespace fathom::optim
