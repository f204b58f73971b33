#include "fathom/nn/container.h"

namespace fathom::nn {

ModuleList::ModuleList(std::string type_name, std::initializer_list<std::shared_ptr<Module>> modules)
    : Module(std::move(type_name)) {
  for (const auto& m : modules) push_back(m);
}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  FATHOM_CHECK(i < modules_.size(), type_name(), ": index ", i, " out of range for ",
               modules_.size(), " modules");
  return modules_[i];
}

void ModuleList::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  replace_child(name, module);  // checks that the child exists, so name is an index in range
  modules_[std::stoul(name)] = std::move(module);
}

ModuleDict::ModuleDict(const std::vector<Item>& items) : Module("ModuleDict") {
  for (const auto& [key, m] : items) insert(key, m);
}

void ModuleDict::insert(const std::string& key, std::shared_ptr<Module> module) {
  // register_module refuses a key already present, an empty key and a dotted one.
  register_module(key, module);
  items_.emplace_back(key, std::move(module));
}

void ModuleDict::replace_module(const std::string& key, std::shared_ptr<Module> module) {
  replace_child(key, module);
  for (auto& item : items_)
    if (item.first == key) item.second = std::move(module);
}

bool ModuleDict::contains(const std::string& key) const {
  for (const auto& item : items_)
    if (item.first == key) return true;
  return false;
}

const std::shared_ptr<Module>& ModuleDict::at(const std::string& key) const {
  for (const auto& item : items_)
    if (item.first == key) return item.second;
  std::string present;
  for (const auto& item : items_) present += (present.empty() ? "'" : ", '") + item.first + "'";
  detail::fail("ModuleDict::at: no module under key '", key, "' (keys: ",
               present.empty() ? std::string("none") : present, ")");
}

std::vector<std::string> ModuleDict::keys() const {
  std::vector<std::string> out;
  for (const auto& item : items_) out.push_back(item.first);
  return out;
}

}  // namespace fathom::nn
