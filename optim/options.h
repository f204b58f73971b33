#pragma once
// Optimizer options in the chainable style of PyTorch's C++ frontend
// (`AdamWOptions(6e-4).weight_decay(0.1).betas({0.9, 0.95})`), and parameter groups.
//
// A group's options override only the options they set; the rest come from the optimizer's
// defaults, as Python PyTorch's param groups do. (The C++ frontend instead takes a group's
// options whole, so `AdamWOptions().weight_decay(0)` would silently reset that group's lr to
// 1e-3.) Setters and the lr constructor record what was set; a default-constructed field is unset.
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fathom/core/options.h"
#include "fathom/core/tensor.h"

namespace fathom::optim {

using NamedParams = std::vector<std::pair<std::string, Tensor>>;

#define FATHOM_OPTIM_ARG(T, name) FATHOM_ARG_NOTE(T, name, this->set_.insert(#name))
// The OptimizerOptions overrides every options class declares (defined in options.cpp).
#define FATHOM_OPTIM_OPTIONS_METHODS(Self, kind)                                                 \
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<Self>(*this); } \
  const char* optimizer() const override { return kind; }                                       \
  double get_lr() const override { return lr_; }                                                \
  void set_lr(double lr) override { lr_ = lr; }                                                 \
  std::vector<std::pair<std::string, double>> fields() const override;                          \
  void check(const std::string& where) const override;                                          \
  void inherit(const OptimizerOptions& defaults) override;

class OptimizerOptions {
 public:
  virtual ~OptimizerOptions() = default;
  virtual std::unique_ptr<OptimizerOptions> clone() const = 0;
  // "AdamW", "SGD": the optimizer these options belong to, for messages.
  virtual const char* optimizer() const = 0;
  virtual double get_lr() const = 0;
  virtual void set_lr(double lr) = 0;
  // Every option as a number, lr first (bools as 0/1): what state_dict saves and compares.
  virtual std::vector<std::pair<std::string, double>> fields() const = 0;
  // Throws naming `where` (e.g. "AdamW param group 1") and the option when one is out of range.
  virtual void check(const std::string& where) const = 0;
  // Takes every option this object did not set from `defaults` (the same type).
  virtual void inherit(const OptimizerOptions& defaults) = 0;
  bool was_set(const std::string& name) const { return set_.count(name) > 0; }

 protected:
  std::set<std::string> set_;
};

class SGDOptions : public OptimizerOptions {
 public:
  SGDOptions() = default;
  explicit SGDOptions(double lr) : lr_(lr) { set_.insert("lr"); }
  FATHOM_OPTIM_ARG(double, lr) = 1e-2;
  FATHOM_OPTIM_ARG(double, momentum) = 0;
  FATHOM_OPTIM_ARG(double, dampening) = 0;
  FATHOM_OPTIM_ARG(double, weight_decay) = 0;
  FATHOM_OPTIM_ARG(bool, nesterov) = false;

 public:
  FATHOM_OPTIM_OPTIONS_METHODS(SGDOptions, "SGD")
};

using Betas = std::tuple<double, double>;

// Adam: weight decay as L2 added to the gradient (default 0).
class AdamOptions : public OptimizerOptions {
 public:
  AdamOptions() = default;
  explicit AdamOptions(double lr) : lr_(lr) { set_.insert("lr"); }
  FATHOM_OPTIM_ARG(double, lr) = 1e-3;
  FATHOM_OPTIM_ARG(Betas, betas) = {0.9, 0.999};
  FATHOM_OPTIM_ARG(double, eps) = 1e-8;
  FATHOM_OPTIM_ARG(double, weight_decay) = 0;

 public:
  FATHOM_OPTIM_OPTIONS_METHODS(AdamOptions, "Adam")
};

// AdamW: the same fields, decoupled weight decay (default 0.01, PyTorch's). A distinct type, so
// an AdamW never runs with Adam's defaults.
class AdamWOptions : public OptimizerOptions {
 public:
  AdamWOptions() = default;
  explicit AdamWOptions(double lr) : lr_(lr) { set_.insert("lr"); }
  FATHOM_OPTIM_ARG(double, lr) = 1e-3;
  FATHOM_OPTIM_ARG(Betas, betas) = {0.9, 0.999};
  FATHOM_OPTIM_ARG(double, eps) = 1e-8;
  FATHOM_OPTIM_ARG(double, weight_decay) = 0.01;

 public:
  FATHOM_OPTIM_OPTIONS_METHODS(AdamWOptions, "AdamW")
};

// Parameters that share options. Without options (or for every option its options did not set)
// the group takes the optimizer's defaults. After the optimizer is built, its param_groups()
// hold complete options; lr is the one a scheduler or the user changes while training.
class ParamGroup {
 public:
  explicit ParamGroup(NamedParams params) : params_(std::move(params)) {}
  template <class O>
    requires std::is_base_of_v<OptimizerOptions, O>
  ParamGroup(NamedParams params, const O& options)
      : params_(std::move(params)), options_(std::make_unique<O>(options)) {}
  ParamGroup(const ParamGroup& o) : params_(o.params_), options_(o.options_ ? o.options_->clone() : nullptr) {}
  ParamGroup(ParamGroup&&) = default;
  // No assignment: a group inside an optimizer may change its lr, never its parameters.
  ParamGroup& operator=(const ParamGroup&) = delete;
  ParamGroup& operator=(ParamGroup&&) = delete;

  const NamedParams& params() const { return params_; }
  // This group's options (or its lack of them) over other parameters: a sharded optimizer's
  // group of this rank's pieces of the group's parameters.
  ParamGroup with_params(NamedParams params) const {
    ParamGroup g(*this);
    g.params_ = std::move(params);
    return g;
  }
  bool has_options() const { return options_ != nullptr; }
  const OptimizerOptions& options() const;
  double lr() const { return options().get_lr(); }
  void set_lr(double lr);

 private:
  friend class Optimizer;
  NamedParams params_;
  std::unique_ptr<OptimizerOptions> options_;
};

}  // namespace fathom::optim
