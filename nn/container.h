#pragma once
// ModuleList and ModuleDict: hold submodules so that their parameters are registered (and
// named) without being called in a fixed order; the owner writes its own forward.
#include <concepts>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

// Modules registered as "0", "1", ... in push_back order ("layers.2.weight").
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  ModuleList(std::initializer_list<std::shared_ptr<Module>> modules)
      : ModuleList("ModuleList", modules) {}
  template <class... Ms>
    requires(sizeof...(Ms) > 0 && (ModuleArg<Ms> && ...))
  explicit ModuleList(Ms&&... modules) : ModuleList() {
    (push_back(to_module_handle(std::forward<Ms>(modules))), ...);
  }

  void push_back(std::shared_ptr<Module> module);
  template <ModuleValue M>
  void push_back(M&& module) {
    push_back(to_module_handle(std::forward<M>(module)));
  }

  // The child "i" (a decimal index) becomes `module`.
  void replace_module(const std::string& name, std::shared_ptr<Module> module) override;

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }
  template <class M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    FATHOM_CHECK(m, type_name(), "::at: module ", i, " is a ", (*this)[i]->type_name());
    return m;
  }

 protected:
  // For containers built on the list (Sequential) under their own type name.
  ModuleList(std::string type_name, std::initializer_list<std::shared_ptr<Module>> modules = {});

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

// Modules registered under their keys, kept in insertion order ("heads.cls.weight"). Keys
// follow the registration rules: not empty, no dots, each used once.
class ModuleDict : public Module {
 public:
  using Item = std::pair<std::string, std::shared_ptr<Module>>;

  ModuleDict() : Module("ModuleDict") {}
  explicit ModuleDict(const std::vector<Item>& items);

  void insert(const std::string& key, std::shared_ptr<Module> module);
  template <ModuleValue M>
  void insert(const std::string& key, M&& module) {
    insert(key, to_module_handle(std::forward<M>(module)));
  }

  void replace_module(const std::string& key, std::shared_ptr<Module> module) override;

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  bool contains(const std::string& key) const;
  // Throws naming the key and the keys present.
  const std::shared_ptr<Module>& at(const std::string& key) const;
  const std::shared_ptr<Module>& operator[](const std::string& key) const { return at(key); }
  template <class M>
  std::shared_ptr<M> at(const std::string& key) const {
    auto m = std::dynamic_pointer_cast<M>(at(key));
    FATHOM_CHECK(m, "ModuleDict::at: module '", key, "' is a ", at(key)->type_name());
    return m;
  }
  std::vector<std::string> keys() const;
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
};

}  // namespace fathom::nn
