#include "fathom/nn/module.h"

#include <algorithm>
#include <ostream>

#include "fathom/autograd/meta.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/storage.h"

namespace fathom::nn {

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor& x) {
  detail::fail(type_name_, "::forward(Tensor): this module has no one-tensor forward (input ",
               x.defined() ? x.desc() : std::string("undefined"),
               "); call its own forward overload instead");
}

void Module::check_name(const std::string& name, const char* what) const {
  FATHOM_CHECK(!name.empty(), type_name_, "::", what, ": the name must not be empty");
  FATHOM_CHECK(name.find('.') == std::string::npos, type_name_, "::", what, ": name '", name,
               "' contains a dot; dots join the names of nested modules in named_parameters(), "
               "so use '_' or register a submodule instead");
  auto taken = [&](const auto& list) {
    for (const auto& item : list)
      if (item.first == name) return true;
    return false;
  };
  FATHOM_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name_, "::", what,
               ": name '", name, "' is already registered in this module");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "register_parameter");
  FATHOM_CHECK(t.defined(), type_name_, "::register_parameter: '", name, "' is undefined");
  FATHOM_CHECK(t.is_leaf(), type_name_, "::register_parameter: '", name, "' ", t.desc(),
               " has autograd history; register a leaf (t.detach())");
  if (requires_grad && is_floating(t.dtype())) t.requires_grad_(true);
  // Made before it was registered (under whatever category): the ledger counts it from now on.
  t.impl().storage->recount(memory::Category::parameters);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "register_buffer");
  FATHOM_CHECK(t.defined(), type_name_, "::register_buffer: '", name, "' is undefined");
  buffers_.emplace_back(name, t.detach());
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "register_module");
  FATHOM_CHECK(module != nullptr, type_name_, "::register_module: '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  detail::fail(type_name_, "::replace_module('", name, "', ", module ? module->type_name() : "null",
               "): this module may call its children through members of its own, which would "
               "go on running the old one; its class must override replace_module to update them");
}

void Module::replace_child(const std::string& name, std::shared_ptr<Module> module) {
  FATHOM_CHECK(module != nullptr, type_name_, "::replace_module: the module for '", name, "' is null");
  for (auto& [n, child] : children_)
    if (n == name) {
      child = std::move(module);
      return;
    }
  std::string present;
  for (const auto& [n, child] : children_) present += (present.empty() ? "'" : ", '") + n + "'";
  detail::fail(type_name_, "::replace_module: no child named '", name, "' (children: ",
               present.empty() ? std::string("none") : present, ")");
}

void Module::collect(const std::string& prefix, bool recurse, bool params, NamedTensors& out,
                     std::vector<const TensorImpl*>& seen) const {
  for (const auto& [name, t] : params ? params_ : buffers_) {
    const TensorImpl* id = t.impl_ptr().get();
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;  // tied: listed once
    seen.push_back(id);
    out.emplace_back(prefix + name, t);
  }
  if (!recurse) return;
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", true, params, out, seen);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", recurse, true, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", recurse, false, out, seen);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  // Explicit stack, children pushed in reverse so they come out in registration order.
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [name, m] = stack.back();
    stack.pop_back();
    out.emplace_back(name, m);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(name.empty() ? it->first : name + "." + it->first, it->second.get());
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

// Replaces the contents of each TensorImpl rather than the handle, so that every copy of the
// handle (the tied lm_head, an optimizer's parameter list) follows.
void Module::convert(const std::function<Tensor(const Tensor&)>& fn) {
  NoGradGuard no_grad;
  auto swap_in = [&](const Tensor& t) {
    Tensor n = fn(t.detach());
    if (n.impl_ptr() == t.impl_ptr() || n.impl().storage == t.impl().storage) return;
    TensorImpl& dst = t.impl();
    dst.storage = n.impl().storage;
    dst.shape = n.shape();
    dst.strides = n.strides();
    dst.offset = n.offset();
    dst.dtype = n.dtype();
  };
  for (auto& [name, t] : named_parameters()) {
    {
      memory::Scope ledger(memory::Category::parameters);
      swap_in(t);
    }
    if (autograd::Meta* m = autograd::meta_if(t)) {
      memory::Scope ledger(memory::Category::gradients);
      if (m->grad.defined()) m->grad = fn(m->grad);
      m->grad_accumulator.reset();  // a live graph's accumulator knows the old dtype/device
    }
  }
  for (auto& [name, t] : named_buffers()) swap_in(t);
}

void Module::to(Device device) {
  convert([&](const Tensor& t) { return ops::to(t, device); });
}

void Module::to(DType dtype) {
  convert([&](const Tensor& t) { return is_floating(t.dtype()) ? ops::to(t, dtype) : t; });
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.zero_grad();
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [name, child] : children_) child->apply(fn);
  fn(*this);
}

void Module::pretty_print(std::ostream& os) const {
  os << type_name_;
  if (children_.empty()) os << "()";
}

namespace {
// Recursion depth is the nesting depth of the model (a handful), not its size.
void print_tree(std::ostream& os, const Module& m, const std::string& indent) {
  m.pretty_print(os);
  auto children = m.named_children();
  if (children.empty()) return;
  os << "(\n";
  for (const auto& [name, child] : children) {
    os << indent << "  (" << name << "): ";
    print_tree(os, *child, indent + "  ");
    os << "\n";
  }
  os << indent << ")";
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Module& module) {
  print_tree(os, module, "");
  return os;
}

}  // namespace fathom::nn
