#pragma once
// The autograd state of one tensor, hung on TensorImpl::autograd. Plain tensors (data, saved
// tensors, anything made under NoGradGuard) have none: it appears when a tensor is made to
// require grad or is produced by a recorded op.
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::autograd {

class Node;

// Called with the leaf once its gradient for the running backward pass is final: every edge
// into the leaf has delivered, and leaf.grad() holds the accumulated sum. Fires on the thread
// running backward, before backward returns, while the rest of the graph may still be pending;
// data-parallel training starts its all-reduce here.
using PostAccumulateHook = std::function<void(const Tensor& leaf)>;
using HookId = int64_t;

struct Meta {
  // Leaves only: set by requires_grad_(). A non-leaf requires grad because it has a grad_fn.
  bool requires_grad = false;
  // Leaves, and non-leaves asked to retain_grad(): the gradient summed over backward passes.
  Tensor grad;
  // The node that produced this tensor and which of its outputs this is; null on leaves.
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  bool retains_grad = false;
  // Leaves: the node that accumulates into `grad`. Weak, so the graph owns it; every graph alive
  // at once shares the one node, which is what lets it count all incoming edges.
  std::weak_ptr<Node> grad_accumulator;
  std::vector<std::pair<HookId, PostAccumulateHook>> hooks;
  HookId next_hook_id = 0;
};

// The tensor's Meta, created on first use.
Meta& meta(const Tensor& t);
// The tensor's Meta, or null when it has none.
inline Meta* meta_if(const Tensor& t) {
  return t.defined() ? t.impl().autograd.get() : nullptr;
}

}  // namespace fathom::autograd
