#include "fathom/autograd/engine.h"

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/node.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/trace.h"

namespace fathom::autograd {

namespace {

// Holds the root gradients; the engine's single entry point into the graph.
class GraphRoot final : public Node {
 public:
  GraphRoot(std::vector<Edge> next, Grads grads)
      : Node("GraphRoot", std::move(next), {}), grads_(std::move(grads)) {}
  Grads apply(Grads&&) override { return std::move(grads_); }

 private:
  Grads grads_;
};

// Brings a gradient produced for `into`'s output k to that output's shape, dtype and device: a
// backward may return the broadcast shape or the promoted dtype of its forward.
Tensor conform(Tensor g, const Node& from, size_t input, const Node& into, uint32_t k) {
  const TensorGeometry& want = into.outputs()[k];
  if (g.shape() != want.shape) {
    // Reducible when want.shape broadcasts to g's shape (right-aligned, 1s or equal sizes).
    bool reducible = g.dim() >= int64_t(want.shape.size());
    for (size_t d = 0; reducible && d < want.shape.size(); ++d) {
      int64_t w = want.shape[want.shape.size() - 1 - d], h = g.shape()[g.dim() - 1 - d];
      reducible = w == h || w == 1;
    }
    FATHOM_CHECK(reducible, "backward: ", from.name(), " returned a gradient ", g.desc(),
                 " for its input ", input, ", which is ", shape_str(want.shape),
                 " (produced by ", into.name(), ")");
    g = ops::sum_to(g, want.shape);
  }
  if (g.device() != want.device) g = ops::to(g, want.device);
  if (g.dtype() != want.dtype) g = ops::to(g, want.dtype);
  return g;
}

// Callbacks queued during the backward pass running on this thread (null when none runs).
// A stack by construction: a nested backward (from a hook) saves and restores the outer list.
thread_local std::vector<std::function<void()>>* t_callbacks = nullptr;

struct CallbackScope {
  std::vector<std::function<void()>> list;
  std::vector<std::function<void()>>* outer;
  CallbackScope() : outer(t_callbacks) { t_callbacks = &list; }
  ~CallbackScope() { t_callbacks = outer; }
};

// The wanted-inputs mask of the node running on this thread (null: every input is wanted).
// Saved and restored around each apply, so a nested backward (recompute) sees its own.
thread_local const std::vector<bool>* t_wanted = nullptr;

struct WantedScope {
  const std::vector<bool>* outer;
  explicit WantedScope(const std::vector<bool>* w) : outer(t_wanted) { t_wanted = w; }
  ~WantedScope() { t_wanted = outer; }
};

struct ReadyOrder {
  // Accumulators first (a finished leaf fires its hooks at once), then the newest node.
  bool operator()(const Node* a, const Node* b) const {
    if (a->is_accumulator() != b->is_accumulator()) return b->is_accumulator();
    return a->sequence_nr() < b->sequence_nr();
  }
};

// Where grad() stops: the gradient reaching each (node, output) listed is summed into its slot
// instead of running the node. Accumulators are never run either, so no leaf changes.
struct Stops {
  std::unordered_map<Node*, std::vector<std::pair<uint32_t, size_t>>> at;  // node -> (output, slot)
  Grads grads;
  bool stops(Node* n) const { return n->is_accumulator() || at.count(n); }
  void deliver(Node* n, uint32_t output, Tensor g) {
    auto it = at.find(n);
    if (it == at.end()) return;  // a leaf nobody asked about
    for (auto& [k, slot] : it->second)
      if (k == output) {
        Tensor& s = grads[slot];
        s = s.defined() ? ops::binary(BinaryOp::add, s, g) : g;
      }
  }
};

// The roots' edges and their gradients (checked, cast to each root), before anything runs.
void root_edges(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, const char* op,
                std::vector<Edge>& edges, Grads& out) {
  FATHOM_CHECK(!roots.empty(), op, ": no tensors given");
  FATHOM_CHECK(grads.empty() || grads.size() == roots.size(), op, ": ", roots.size(),
               " tensors but ", grads.size(), " gradients");
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    FATHOM_CHECK(r.defined(), op, ": tensor ", i, " is undefined");
    FATHOM_CHECK(r.requires_grad(), op, ": tensor ", r.desc(),
                 " does not require grad and has no grad_fn: nothing to differentiate. Call "
                 "requires_grad_() on the leaves to train, and do not run the forward under "
                 "NoGradGuard");
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      FATHOM_CHECK(r.numel() == 1, op, ": a gradient can be implied only for a one-element "
                   "tensor, got ", r.desc(), "; pass a gradient of its shape: t.backward(grad)");
      g = ones(r.shape(), r.options());
    }
    FATHOM_CHECK(g.shape() == r.shape(), op, ": gradient ", g.desc(),
                 " does not match the tensor ", r.desc());
    FATHOM_CHECK(is_floating(g.dtype()), op, ": gradient ", g.desc(),
                 " must be floating point");
    edges.push_back(gradient_edge(r));
    out.push_back(ops::to(ops::to(g, r.device()), r.dtype()));
  }
}

// Edges backward_excluding() leaves out: (node, output) pairs no gradient flows into.
struct Skips {
  std::unordered_map<const Node*, std::vector<uint32_t>> at;
  // backward_weight(): the nodes the input half ran, entered only from the root (their seeds).
  const std::unordered_set<const Node*>* nodes = nullptr;
  bool skips(const Edge& e) const {
    auto it = at.find(e.fn.get());
    if (it == at.end()) return false;
    for (uint32_t k : it->second)
      if (k == e.input_nr) return true;
    return false;
  }
};

// Runs the graph from the root edges; with `stops`, only down to them (grad()); with `skips`,
// never along those edges. With either, a node that leads to no wanted sink (a requested stop;
// an accumulator not skipped; a tensor retaining its grad) is pruned: it does not run, so the
// two halves of a split backward (pipeline.md) each compute only what they need.
// With `capture` (grad_input()), every node run that drops a gradient toward the weights is
// kept with the gradients it received, as a seed for backward_weight().
void run(std::vector<Edge> edges, Grads root_grads, bool retain_graph, Stops* stops,
         const Skips* skips = nullptr, WeightGradPending* capture = nullptr) {
  NoGradGuard no_grad;
  CallbackScope callbacks;
  auto root = std::make_shared<GraphRoot>(std::move(edges), std::move(root_grads));
  auto skipped = [&](const Node* from, const Edge& e) {
    return skips && (skips->skips(e) || (skips->nodes && from != root.get() &&
                                         skips->nodes->count(e.fn.get())));
  };
  auto stopped = [&](const Node* from, const Edge& e) {
    return (stops && stops->stops(e.fn.get())) || skipped(from, e);
  };
  std::unordered_map<const Node*, std::shared_ptr<Node>> owners;  // for capture

  // Dependencies: how many edges point at each node from the part of the graph we will run.
  std::unordered_map<Node*, int64_t> deps;
  {
    std::unordered_set<Node*> seen{root.get()};
    std::vector<Node*> stack{root.get()};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const Edge& e : n->next()) {
        if (!e.fn || stopped(n, e)) continue;
        if (capture) owners.emplace(e.fn.get(), e.fn);
        ++deps[e.fn.get()];
        if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
      }
    }
  }
  // Pruning: `useful` holds the nodes that lead to a wanted sink. Nodes are visited children
  // first (a topological order reversed), so each node's children are decided before it.
  std::unordered_set<Node*> useful;
  const bool prune = stops || skips;
  if (prune) {
    std::unordered_map<Node*, int64_t> left = deps;
    std::vector<Node*> topo{root.get()};
    for (size_t i = 0; i < topo.size(); ++i)
      for (const Edge& e : topo[i]->next())
        if (e.fn && !stopped(topo[i], e) && --left[e.fn.get()] == 0) topo.push_back(e.fn.get());
    for (size_t i = topo.size(); i-- > 0;) {
      Node* n = topo[i];
      bool use = n->is_accumulator() || !n->retained.empty();
      for (const Edge& e : n->next()) {
        if (use) break;
        if (!e.fn) continue;
        if (stopped(n, e)) use = stops && stops->at.count(e.fn.get()) && !skipped(n, e);
        else use = useful.count(e.fn.get()) > 0;
      }
      if (use) useful.insert(n);
    }
    if (!useful.count(root.get())) return;  // nothing wanted is reachable
    deps.clear();
    for (Node* n : topo)
      if (useful.count(n))
        for (const Edge& e : n->next())
          if (e.fn && !stopped(n, e) && useful.count(e.fn.get())) ++deps[e.fn.get()];
  }
  auto pruned = [&](const Node* from, const Edge& e) {
    return prune && !stopped(from, e) && !useful.count(e.fn.get());
  };

  // Gradients received so far for each node's outputs, summed over consumers.
  std::unordered_map<Node*, Grads> buffers;
  std::priority_queue<Node*, std::vector<Node*>, ReadyOrder> ready;
  ready.push(root.get());
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Grads in;
    if (auto it = buffers.find(node); it != buffers.end()) {
      in = std::move(it->second);
      buffers.erase(it);
    }
    in.resize(node->outputs().size());
    // A seed of backward_weight() already gave its retained gradients in the input half.
    bool seed = skips && skips->nodes && skips->nodes->count(node);
    for (auto& [k, weak] : node->retained) {
      if (seed) break;
      std::shared_ptr<Meta> m = weak.lock();
      if (!m || !in[k].defined()) continue;
      m->grad = m->grad.defined() ? ops::binary(BinaryOp::add, m->grad, in[k]) : ops::clone(in[k]);
    }
    // An output nobody used (one half of a split) gets zeros, so backward functions see a
    // gradient for every output. A leaf with no gradient at all is left as it was.
    if (!node->is_accumulator())
      for (size_t k = 0; k < in.size(); ++k)
        if (!in[k].defined()) {
          const TensorGeometry& o = node->outputs()[k];
          in[k] = zeros(o.shape, {o.dtype, o.device});
        }

    // Which inputs' gradients will be used (input_wanted()); only a pruning run leaves some out.
    std::vector<bool> wanted;
    if (prune) {
      wanted.resize(node->next().size());
      bool drops = false;  // a gradient toward the weights is left out
      for (size_t i = 0; i < wanted.size(); ++i) {
        const Edge& e = node->next()[i];
        wanted[i] = e.fn && !skipped(node, e) && !pruned(node, e) &&
                    (!stopped(node, e) || stops->at.count(e.fn.get()));
        drops = drops || (e.fn && !wanted[i]);
      }
      if (capture && node != root.get()) {
        capture->ran.insert(node);
        if (drops) capture->seeds.emplace_back(owners.at(node), in);
      }
    }
    Grads out;
    {
      WantedScope scope(prune ? &wanted : nullptr);
      out = node->apply(std::move(in));
    }
    if (!retain_graph) node->release();

    const auto& next = node->next();
    for (size_t i = 0; i < next.size(); ++i) {
      const Edge& e = next[i];
      if (!e.fn || pruned(node, e)) continue;
      bool has = i < out.size() && out[i].defined();
      if (skipped(node, e)) continue;
      if (stopped(node, e)) {
        if (has) stops->deliver(e.fn.get(), e.input_nr, conform(std::move(out[i]), *node, i, *e.fn, e.input_nr));
        continue;
      }
      if (has) {
        Tensor g = conform(std::move(out[i]), *node, i, *e.fn, e.input_nr);
        Grads& buf = buffers[e.fn.get()];
        if (buf.empty()) buf.resize(e.fn->outputs().size());
        Tensor& slot = buf[e.input_nr];
        // Out of place: the gradient may alias another (add passes its gradient to both inputs).
        slot = slot.defined() ? ops::binary(BinaryOp::add, slot, g) : std::move(g);
      }
      if (--deps[e.fn.get()] == 0) ready.push(e.fn.get());
    }
  }
  // Indexed, not iterated: a callback may queue another.
  for (size_t i = 0; i < callbacks.list.size(); ++i) {
    auto fn = std::move(callbacks.list[i]);
    fn();
  }
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
              bool retain_graph) {
  std::vector<Edge> edges;
  Grads root_grads;
  root_edges(roots, grads, "backward", edges, root_grads);
  // The timeline's "backward" span covers the queued callbacks too (DDP's wait for its last
  // buckets), as that is what the caller's backward() costs.
  trace::Scope span("autograd", "backward");
  trace::DeviceScope device_span("autograd", "backward", roots.empty() ? Device::cpu() : roots[0].device());
  run(std::move(edges), std::move(root_grads), retain_graph, nullptr);
}

Grads grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
           const std::vector<Edge>& at, bool retain_graph) {
  std::vector<Edge> edges;
  Grads root_grads;
  root_edges(roots, grads, "grad", edges, root_grads);
  Stops stops;
  stops.grads.resize(at.size());
  for (size_t i = 0; i < at.size(); ++i) {
    FATHOM_CHECK(at[i].fn, "grad: edge ", i, " leads nowhere (a tensor that needs no gradient)");
    stops.at[at[i].fn.get()].emplace_back(at[i].input_nr, i);
  }
  run(std::move(edges), std::move(root_grads), retain_graph, &stops);
  return std::move(stops.grads);
}

void backward_excluding(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                        const std::vector<Edge>& skip, bool retain_graph) {
  std::vector<Edge> edges;
  Grads root_grads;
  root_edges(roots, grads, "backward_excluding", edges, root_grads);
  Skips skips;
  for (const Edge& e : skip)
    if (e.fn) skips.at[e.fn.get()].push_back(e.input_nr);
  trace::Scope span("autograd", "backward");
  trace::DeviceScope device_span("autograd", "backward", roots.empty() ? Device::cpu() : roots[0].device());
  run(std::move(edges), std::move(root_grads), retain_graph, nullptr, &skips);
}

Grads grad_input(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                 const std::vector<Edge>& at, WeightGradPending& pending) {
  FATHOM_CHECK(pending.empty(), "grad_input: the pending weight half of an earlier split "
               "backward is still there; run backward_weight() on it first");
  std::vector<Edge> edges;
  Grads root_grads;
  root_edges(roots, grads, "grad_input", edges, root_grads);
  Stops stops;
  stops.grads.resize(at.size());
  for (size_t i = 0; i < at.size(); ++i) {
    FATHOM_CHECK(at[i].fn, "grad_input: edge ", i, " leads nowhere (a tensor that needs no gradient)");
    stops.at[at[i].fn.get()].emplace_back(at[i].input_nr, i);
  }
  // The graph stays: the seeds' backward functions run again in backward_weight().
  run(std::move(edges), std::move(root_grads), /*retain_graph=*/true, &stops, nullptr, &pending);
  pending.started = true;
  pending.at = at;
  return std::move(stops.grads);
}

void backward_weight(WeightGradPending& pending) {
  FATHOM_CHECK(pending.started, "backward_weight: no grad_input() ran for this pending half");
  std::vector<Edge> edges;
  Grads grads;
  for (auto& [node, in] : pending.seeds)
    for (size_t k = 0; k < in.size(); ++k) {
      edges.push_back({node, uint32_t(k)});
      grads.push_back(in[k]);
    }
  Skips skips;
  skips.nodes = &pending.ran;
  for (const Edge& e : pending.at) skips.at[e.fn.get()].push_back(e.input_nr);
  trace::Scope span("autograd", "backward");
  trace::DeviceScope device_span("autograd", "backward", grads.empty() ? Device::cpu() : grads[0].device());
  if (!edges.empty()) run(std::move(edges), std::move(grads), /*retain_graph=*/false, nullptr, &skips);
  pending = WeightGradPending{};
}

bool input_wanted(size_t input) {
  return !t_wanted || input >= t_wanted->size() || (*t_wanted)[input];
}

void queue_callback(std::function<void()> fn) {
  FATHOM_CHECK(t_callbacks, "queue_callback: no backward pass is running on this thread; queue "
               "callbacks from a hook or a node during backward");
  FATHOM_CHECK(fn != nullptr, "queue_callback: empty callback");
  t_callbacks->push_back(std::move(fn));
}

HookId register_post_accumulate_hook(const Tensor& leaf, PostAccumulateHook hook) {
  FATHOM_CHECK(leaf.defined() && leaf.is_leaf() && leaf.requires_grad(),
               "register_post_accumulate_hook: ", leaf.desc(),
               " is not a leaf that requires grad; hooks go on parameters (requires_grad_())");
  FATHOM_CHECK(hook != nullptr, "register_post_accumulate_hook: empty hook");
  Meta& m = meta(leaf);
  HookId id = m.next_hook_id++;
  m.hooks.emplace_back(id, std::move(hook));
  return id;
}

void remove_hook(const Tensor& leaf, HookId id) {
  Meta* m = meta_if(leaf);
  FATHOM_CHECK(m, "remove_hook: ", leaf.desc(), " has no hooks");
  for (auto it = m->hooks.begin(); it != m->hooks.end(); ++it)
    if (it->first == id) {
      m->hooks.erase(it);
      return;
    }
  detail::fail("remove_hook: no hook ", id, " on ", leaf.desc());
}

void retain_grad(const Tensor& t) {
  FATHOM_CHECK(t.defined() && t.requires_grad(), "retain_grad: ", t.desc(),
               " does not require grad");
  Meta& m = meta(t);
  if (!m.grad_fn || m.retains_grad) return;  // leaves keep their gradient anyway
  m.retains_grad = true;
  m.grad_fn->retained.emplace_back(m.output_nr, t.impl().autograd);
}

}  // namespace fathom::autograd
