#pragma once
// Module: named parameters, buffers and submodules, like torch::nn::Module, held by
// std::shared_ptr (auto model = std::make_shared<nn::GPT>(cfg)) with one class name per module.
//
// Names are registered per module and joined with dots by named_parameters()
// ("blocks.0.attn.qkv.weight"); checkpoints and DDP key everything by these names, so a name
// containing a dot is refused. A tensor registered under two names (tied weights) is listed once,
// under the first name reached.
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fathom/autograd/grad_mode.h"
#include "fathom/core/tensor.h"

namespace fathom::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// What state_dict() gives and load_state_dict() takes; optimizers and the safetensors reader use
// the same type.
using StateDict = std::map<std::string, Tensor>;

// What a non-strict load_state_dict left out: model keys the dict lacks, dict keys the model lacks.
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module {
 public:
  explicit Module(std::string type_name = "Module");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  // Moving is safe because a module holds its parameters and children only as handles: the
  // moved-to module's members and its registered lists keep pointing at the same tensors and
  // submodules. That lets Sequential(Linear(4, 8), ReLU()) move values into shared_ptrs.
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  // The one-tensor forward that Sequential chains; a module whose forward takes other
  // arguments leaves it as is, and calling it is an error naming the module.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const std::string& type_name() const { return type_name_; }

  // Registration: returns what was registered. A parameter is made a leaf that requires grad
  // (when floating point and requires_grad); a buffer (running statistics, masks) gets no grad
  // but moves with to() and is saved with the parameters.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // Puts `module` where the child registered as `name` was (same name, same place in the
  // order), as PyTorch's setattr on a submodule does; parallel::convert_sync_batchnorm uses it.
  // A module that calls its children through members of its own must update them too, so
  // this is an error unless the module's class overrides it (calling replace_child, then
  // setting its member): ModuleList, ModuleDict, Sequential and the ResNet blocks do.
  virtual void replace_module(const std::string& name, std::shared_ptr<Module> module);

  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  // This module (named "") and every descendant, depth first, in registration order.
  std::vector<std::pair<std::string, Module*>> named_modules();
  int64_t num_parameters() const;

  // Training mode, for this module and all below it (dropout reads it).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves or casts parameters and buffers (and their gradients) in place: every handle to a
  // parameter (a tied weight, an optimizer's list) sees the change. to(DType) casts only
  // floating-point tensors, as PyTorch does.
  void to(Device device);
  void to(DType dtype);
  // Drops every parameter's gradient (set_to_none, as PyTorch's default).
  void zero_grad();
  // Calls fn on every descendant, then on this module (PyTorch's order).
  void apply(const std::function<void(Module&)>& fn);

  // Parameters and buffers under their dotted names, as detached handles that share storage
  // (writing into one writes into the model, as in PyTorch).
  StateDict state_dict() const;
  // Copies values in place into the existing tensors (so an optimizer or DDP holding the
  // handles sees them), moving them to each tensor's device; dtypes must match. Everything is
  // checked before anything is written: a shape or dtype mismatch is always an error, and so
  // are missing or unexpected keys when strict; the error lists every problem at once.
  LoadStateDictResult load_state_dict(const StateDict& dict, bool strict = true);

  // Writes this module's own line of the tree printed by operator<<, e.g.
  // "Linear(in_features=4, out_features=8, bias=true)". The default is the type name, with
  // "()" when the module has no children (their block supplies the parentheses otherwise).
  virtual void pretty_print(std::ostream& os) const;

 protected:
  // The registration half of replace_module: swaps the child registered as `name`.
  void replace_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, bool recurse, bool params, NamedTensors& out,
               std::vector<const TensorImpl*>& seen) const;
  void convert(const std::function<Tensor(const Tensor&)>& fn);

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// The module tree in PyTorch's repr layout: each child on its own line as "(name): ...".
std::ostream& operator<<(std::ostream& os, const Module& module);

}  // namespace fathom::nn
