#include "fathom/autograd/node.h"

#include "fathom/autograd/grad_mode.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/storage.h"

namespace fathom::autograd {

static thread_local bool t_grad_enabled = true;
bool is_grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }

// The ledger's activations are what a thread allocates outside any memory::Scope while grad
// mode is on: every tensor a backward function saves, and every forward intermediate, is made
// then, whichever way an op captures it; backward passes, optimizer steps, initialisation and
// evaluation run with grad mode off and land in `other`. Installed with grad mode itself, so
// any program that records a graph counts its activations.
[[maybe_unused]] static const bool g_rule_installed = [] {
  memory::set_unscoped_rule(
      [] { return t_grad_enabled ? memory::Category::activations : memory::Category::other; });
  return true;
}();

static std::atomic<uint64_t> g_next_sequence_nr{0};
uint64_t next_sequence_nr() { return g_next_sequence_nr.load(std::memory_order_relaxed); }

Meta& meta(const Tensor& t) {
  auto& slot = t.impl().autograd;
  if (!slot) slot = std::make_shared<Meta>();
  return *slot;
}

Node::Node(std::string name, std::vector<Edge> next, std::vector<TensorGeometry> outputs)
    : name_(std::move(name)),
      next_(std::move(next)),
      outputs_(std::move(outputs)),
      sequence_nr_(g_next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}

// Dropping the last handle on a long chain would destroy it recursively, one stack frame per
// node, and overflow on deep graphs. Instead, take the edges of every node we are the last owner
// of and let each die with no edges left.
Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  for (Edge& e : next_)
    if (e.fn) stack.push_back(std::move(e.fn));
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1)
      for (Edge& e : n->next_)
        if (e.fn) stack.push_back(std::move(e.fn));
  }
}

FunctionNode::FunctionNode(std::string name, std::vector<Edge> next,
                           std::vector<TensorGeometry> outputs, BackwardFn fn)
    : Node(std::move(name), std::move(next), std::move(outputs)), fn_(std::move(fn)) {}

Grads FunctionNode::apply(Grads&& grads) {
  FATHOM_CHECK(fn_, "backward through a graph that was already freed; pass retain_graph=true to "
                    "the first backward (node ", name(), ")");
  Grads out = fn_(grads);
  FATHOM_CHECK(out.size() == next().size(), name(), " backward: returned ", out.size(),
               " gradients for ", next().size(), " inputs");
  return out;
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad", {}, {TensorGeometry::of(Tensor(leaf))}), leaf_(std::move(leaf)) {}

// The first gradient is taken as it is when nothing else can see its memory (the common case:
// a fresh kernel output); otherwise it is copied, because later passes add into leaf.grad in
// place and must not write through into a user's tensor, another leaf's grad or a broadcast view.
static Tensor own(Tensor g) {
  bool sole = g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1 &&
              g.is_contiguous() && g.offset() == 0 &&
              g.impl().storage->nbytes() == g.nbytes();
  return sole ? g : ops::clone(g);
}

Grads AccumulateGrad::apply(Grads&& grads) {
  Tensor leaf(leaf_);
  Meta& m = meta(leaf);
  if (grads[0].defined()) {
    if (!m.grad.defined()) {
      memory::Scope ledger(memory::Category::gradients);  // a copy is made as a gradient
      m.grad = own(std::move(grads[0]));
      m.grad.impl().storage->recount(memory::Category::gradients);  // a taken one becomes one
    } else {
      ops::add_(m.grad, grads[0]);
    }
  }
  // A hook may register or remove hooks: iterate over a copy.
  auto hooks = m.hooks;
  for (auto& [id, hook] : hooks) hook(leaf);
  return {};
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor saved(const Tensor& t) {
  if (!t.defined()) return t;
  auto impl = std::make_shared<TensorImpl>(t.impl());
  impl->autograd = nullptr;
  return Tensor(std::move(impl));
}

Edge gradient_edge(const Tensor& t) {
  Meta* m = meta_if(t);
  if (!m) return {};
  if (m->grad_fn) return {m->grad_fn, m->output_nr};
  if (!m->requires_grad) return {};
  std::shared_ptr<Node> acc = m->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m->grad_accumulator = acc;
  }
  return {acc, 0};
}

std::vector<Tensor> record(std::string name, const std::vector<Tensor>& inputs,
                           std::vector<Tensor> outputs, BackwardFn fn) {
  if (!needs_grad(inputs)) return outputs;
  std::vector<Edge> next;
  next.reserve(inputs.size());
  for (const Tensor& t : inputs) next.push_back(t.defined() ? gradient_edge(t) : Edge{});
  std::vector<TensorGeometry> geo;
  for (const Tensor& o : outputs) geo.push_back(TensorGeometry::of(o));
  auto node = std::make_shared<FunctionNode>(std::move(name), std::move(next), std::move(geo),
                                             std::move(fn));
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor fresh = saved(outputs[i]);
    Meta& m = meta(fresh);
    m.grad_fn = node;
    m.output_nr = uint32_t(i);
    outputs[i] = std::move(fresh);
  }
  return outputs;
}

Tensor record(std::string name, const std::vector<Tensor>& inputs, const Tensor& output,
              BackwardFn fn) {
  return record(std::move(name), inputs, std::vector<Tensor>{output}, std::move(fn))[0];
}

}  // namespace fathom::autograd
