#pragma once
#include <initializer_list>
#include <memory>
#include <utility>

#include "fathom/nn/container.h"

namespace fathom::nn {

// Runs its modules in order, each one's output the next one's input: a ModuleList with a
// forward. The modules are registered as "0", "1", ... (so "blocks.3.attn.qkv.weight").
//
// A single Sequential rvalue given to the constructor is a move, not a nested child; nest one
// through a shared_ptr.
class Sequential : public ModuleList {
 public:
  Sequential() : ModuleList("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules)
      : ModuleList("Sequential", modules) {}
  template <class... Ms>
    requires(sizeof...(Ms) > 0 && (ModuleArg<Ms> && ...))
  explicit Sequential(Ms&&... modules) : Sequential() {
    (push_back(to_module_handle(std::forward<Ms>(modules))), ...);
  }

  Tensor forward(const Tensor& x) override;
};

}  // namespace fathom::nn
