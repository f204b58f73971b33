#include "fathom/nn/sequential.h"

namespace fathom::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules)
    : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : modules_) h = m->forward(h);
  return h;
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  FATHOM_CHECK(i < modules_.size(), "Sequential: index ", i, " out of range for ",
               modules_.size(), " modules");
  return modules_[i];
}

}  // namespace fathom::nn
