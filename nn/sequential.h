#pragma once
#include <concepts>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <utility>

#include "fathom/nn/module.h"

namespace fathom::nn {

// What a container accepts: a shared_ptr to any module, or a module value moved in
// (Sequential(Linear(4, 8), ReLU())). An lvalue module is refused: it would have to be copied.
template <class T>
concept ModuleHandle = std::convertible_to<std::decay_t<T>, std::shared_ptr<Module>>;
template <class T>
concept ModuleValue = std::derived_from<std::remove_cvref_t<T>, Module> &&
                      !std::is_lvalue_reference_v<T> &&
                      std::move_constructible<std::remove_cvref_t<T>>;
template <class T>
concept ModuleArg = ModuleHandle<T> || ModuleValue<T>;

template <class T>
std::shared_ptr<Module> to_module_handle(T&& m) {
  if constexpr (ModuleHandle<T>)
    return std::forward<T>(m);
  else
    return std::make_shared<std::remove_cvref_t<T>>(std::move(m));
}

// Runs its modules in order, each one's output the next one's input. The modules are
// registered as "0", "1", ... (so "blocks.3.attn.qkv.weight").
//
// A single Sequential rvalue given to the constructor is a move, not a nested child; nest one
// through a shared_ptr.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  template <class... Ms>
    requires(sizeof...(Ms) > 0 && (ModuleArg<Ms> && ...))
  explicit Sequential(Ms&&... modules) : Sequential() {
    (push_back(to_module_handle(std::forward<Ms>(modules))), ...);
  }

  void push_back(std::shared_ptr<Module> module);
  template <ModuleValue M>
  void push_back(M&& module) {
    push_back(to_module_handle(std::forward<M>(module)));
  }
  Tensor forward(const Tensor& x) override;

  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }
  // The module at i as its own type; throws if it is another type.
  template <class M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    FATHOM_CHECK(m, "Sequential::at: module ", i, " is a ", (*this)[i]->type_name());
    return m;
  }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace fathom::nn
