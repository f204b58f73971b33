#pragma once
// The backward engine and the leaf-gradient hooks.
//
// backward() runs on the calling thread. It finds every node reachable from the roots (an
// explicit stack, no recursion, so a graph a million ops deep is fine), counts each node's
// incoming edges, and runs nodes whose gradients are complete, leaf accumulators first, then
// the most recently created. A leaf's hooks therefore fire the moment its last gradient lands,
// while the rest of the graph is still to run.
#include <functional>
#include <memory>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fathom/autograd/meta.h"
#include "fathom/autograd/node.h"
#include "fathom/core/tensor.h"

namespace fathom::autograd {

// Back-propagates from `roots`. grads[i] is d(out)/d(roots[i]); it may be omitted (empty vector,
// or an undefined entry) for a one-element root, which then gets 1. Without retain_graph the
// saved tensors of every node run are freed, and a second backward through them throws.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);

// The gradients of `roots` with respect to the edges `at` (torch.autograd.grad, by edge:
// gradient_edge(t) for a tensor t, or a node's own next()): the graph runs from the roots down
// to those edges, and what reaches each is summed and returned, one per edge (undefined where
// nothing arrives). Nothing at or past them runs, and no accumulator runs at all, so no leaf's
// grad changes and no hook fires. Nodes that lead to none of those edges do not run either.
// Frees the part it ran unless retain_graph.
Grads grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
           const std::vector<Edge>& at, bool retain_graph = false);

// backward() that sends no gradient along the edges `skip` (gradient_edge(x) of an input x):
// nodes that lead only there do not run, while every other leaf accumulates and fires its hooks
// as in backward(). With grad() to those edges it splits one backward in two, input gradients
// first and weight gradients later, but the second half restarts from the roots, so nodes on
// the input's path run in both; grad_input() and backward_weight() below do not.
void backward_excluding(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                        const std::vector<Edge>& skip, bool retain_graph = false);

// A split backward that runs each node once (what zero-bubble pipelines want): grad_input()
// computes the gradients to `at` (a stage's input) with every weight gradient left out, and
// keeps, for each node it ran that leaves one out, the gradients that node received;
// backward_weight() then runs only those nodes again, for their weight inputs only, and the
// nodes below them that lead to leaves: each leaf accumulates and fires its hooks as in
// backward(), the graph is freed, and `pending` is empty again. Together they compute what one
// backward() would, each node's gradients once (matmul: dX in the first half, dW in the
// second). Until backward_weight() the graph and the kept gradients stay alive.
struct WeightGradPending {
  std::vector<std::pair<std::shared_ptr<Node>, Grads>> seeds;
  std::unordered_set<const Node*> ran;  // every node grad_input() ran
  std::vector<Edge> at;                 // the input edges, which get nothing in the weight half
  bool started = false;
  bool empty() const { return !started; }
};
Grads grad_input(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                 const std::vector<Edge>& at, WeightGradPending& pending);
void backward_weight(WeightGradPending& pending);

// Inside a backward function: false when the engine will drop the gradient of the node's input
// `input` (pruned by grad(), backward_excluding(), grad_input() or backward_weight()), so the function may skip computing it
// (matmul skips its weight GEMM during a pipeline's input-gradient pass). True everywhere else.
bool input_wanted(size_t input);

// Queues fn to run once the backward pass running on this thread has finished every node,
// before backward() returns (PyTorch's queue_callback). Callbacks run in the order queued and
// may queue more. Call it from inside backward (from a hook or a node); elsewhere it throws.
// DDP uses it to wait for its last all-reduce at the end of the pass.
void queue_callback(std::function<void()> fn);

// Registers a hook on a leaf that requires grad; it fires once per backward pass that reaches
// the leaf, after the leaf's gradient for that pass is final. Returns an id for remove_hook.
HookId register_post_accumulate_hook(const Tensor& leaf, PostAccumulateHook hook);
void remove_hook(const Tensor& leaf, HookId id);

// Asks a non-leaf tensor to keep its gradient in grad() (leaves always do).
void retain_grad(const Tensor& t);

}  // namespace fathom::autograd
