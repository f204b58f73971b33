#pragma once
#include <initializer_list>

#include "fathom/nn/module.h"

namespace fathom::nn {

// Runs its modules in order, each one's output the next one's input. The modules are
// registered as "0", "1", ... (so "blocks.3.attn.qkv.weight").
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);

  void push_back(std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;

  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
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
