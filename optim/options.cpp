#include "fathom/optim/options.h"

#include <cmath>

#include "fathom/core/error.h"

namespace fathom::optim {

namespace {

template <class O>
const O& same_kind(const OptimizerOptions& self, const OptimizerOptions& d) {
  auto* o = dynamic_cast<const O*>(&d);
  FATHOM_CHECK(o, self.optimizer(), ": cannot take defaults from ", d.optimizer(), " options");
  return *o;
}

void check_lr(const std::string& where, double lr) {
  FATHOM_CHECK(lr >= 0 && std::isfinite(lr), where, ": lr must be a finite number >= 0, got ", lr);
}

template <class O>
std::vector<std::pair<std::string, double>> adam_fields(const O& o) {
  return {{"lr", o.lr()}, {"beta1", std::get<0>(o.betas())}, {"beta2", std::get<1>(o.betas())},
          {"eps", o.eps()}, {"weight_decay", o.weight_decay()}};
}

template <class O>
void adam_check(const O& o, const std::string& where) {
  check_lr(where, o.lr());
  auto [b1, b2] = o.betas();
  FATHOM_CHECK(b1 >= 0 && b1 < 1, where, ": beta1 must be in [0, 1), got ", b1);
  FATHOM_CHECK(b2 >= 0 && b2 < 1, where, ": beta2 must be in [0, 1), got ", b2);
  FATHOM_CHECK(o.eps() >= 0, where, ": eps must be >= 0, got ", o.eps());
  FATHOM_CHECK(o.weight_decay() >= 0, where, ": weight_decay must be >= 0, got ", o.weight_decay());
}

template <class O>
void adam_inherit(O& o, const O& d) {
  if (!o.was_set("lr")) o.set_lr(d.lr());
  if (!o.was_set("betas")) o.betas(d.betas());
  if (!o.was_set("eps")) o.eps(d.eps());
  if (!o.was_set("weight_decay")) o.weight_decay(d.weight_decay());
}

}  // namespace

std::vector<std::pair<std::string, double>> SGDOptions::fields() const {
  return {{"lr", lr_}, {"momentum", momentum_}, {"dampening", dampening_},
          {"weight_decay", weight_decay_}, {"nesterov", nesterov_ ? 1.0 : 0.0}};
}

void SGDOptions::check(const std::string& where) const {
  check_lr(where, lr_);
  FATHOM_CHECK(momentum_ >= 0, where, ": momentum must be >= 0, got ", momentum_);
  FATHOM_CHECK(weight_decay_ >= 0, where, ": weight_decay must be >= 0, got ", weight_decay_);
  FATHOM_CHECK(!nesterov_ || (momentum_ > 0 && dampening_ == 0), where,
               ": nesterov needs momentum > 0 and dampening 0, got momentum ", momentum_,
               " and dampening ", dampening_);
}

void SGDOptions::inherit(const OptimizerOptions& defaults) {
  const auto& d = same_kind<SGDOptions>(*this, defaults);
  // Through the fields, not the setters: what was set stays a record of the user's choices.
  if (!was_set("lr")) lr_ = d.lr_;
  if (!was_set("momentum")) momentum_ = d.momentum_;
  if (!was_set("dampening")) dampening_ = d.dampening_;
  if (!was_set("weight_decay")) weight_decay_ = d.weight_decay_;
  if (!was_set("nesterov")) nesterov_ = d.nesterov_;
}

std::vector<std::pair<std::string, double>> AdamOptions::fields() const { return adam_fields(*this); }
void AdamOptions::check(const std::string& where) const { adam_check(*this, where); }
void AdamOptions::inherit(const OptimizerOptions& defaults) {
  auto keep = set_;
  adam_inherit(*this, same_kind<AdamOptions>(*this, defaults));
  set_ = keep;
}

std::vector<std::pair<std::string, double>> AdamWOptions::fields() const { return adam_fields(*this); }
void AdamWOptions::check(const std::string& where) const { adam_check(*this, where); }
void AdamWOptions::inherit(const OptimizerOptions& defaults) {
  auto keep = set_;
  adam_inherit(*this, same_kind<AdamWOptions>(*this, defaults));
  set_ = keep;
}

const OptimizerOptions& ParamGroup::options() const {
  FATHOM_CHECK(options_, "ParamGroup: this group has no options of its own; the optimizer's "
               "param_groups() hold the complete ones");
  return *options_;
}

void ParamGroup::set_lr(double lr) {
  FATHOM_CHECK(options_, "ParamGroup: set_lr on a group without options; set the lr on the "
               "optimizer's param_groups(), or give the group options");
  check_lr(std::string(options_->optimizer()) + " param group", lr);
  options_->set_lr(lr);
}

}  // namespace fathom::optim
