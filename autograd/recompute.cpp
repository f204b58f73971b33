#include "fathom/autograd/recompute.h"

#include <set>
#include <unordered_set>
#include <utility>

#include "fathom/autograd/engine.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/node.h"
#include "fathom/core/random.h"

namespace fathom::autograd {

namespace {

// One run of the region with grad mode on: its inputs as fresh leaves (so its graph stops at
// them), its outputs, and the edges by which its graph leaves the region, in the order reached.
struct Region {
  std::vector<Tensor> leaves;
  std::vector<Tensor> outputs;
  std::vector<Edge> boundary;
};

// needs[i]: whether inputs[i] requires grad (the node keeps its inputs without history).
Region run_region(const RecomputeFn& fn, const std::vector<Tensor>& inputs,
                  const std::vector<bool>& needs) {
  EnableGradGuard grad_on;
  Region r;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor leaf = saved(inputs[i]);
    if (needs[i]) leaf.requires_grad_(true);
    r.leaves.push_back(std::move(leaf));
  }
  // Nodes numbered from `first` are the region's own; an edge into an older node (an outside
  // tensor's history) or into any accumulator (a parameter's, an input leaf's) leaves it.
  uint64_t first = next_sequence_nr();
  r.outputs = fn(r.leaves);
  std::set<std::pair<Node*, uint32_t>> left;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  auto visit = [&](const Edge& e) {
    if (!e.fn) return;
    if (e.fn->is_accumulator() || e.fn->sequence_nr() < first) {
      if (left.insert({e.fn.get(), e.input_nr}).second) r.boundary.push_back(e);
    } else if (seen.insert(e.fn.get()).second) {
      stack.push_back(e.fn.get());
    }
  };
  for (const Tensor& o : r.outputs)
    if (o.defined() && o.requires_grad()) visit(gradient_edge(o));
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next()) visit(e);
  }
  return r;
}

// Which input's leaf an accumulator belongs to, or -1 (a parameter or other outside leaf).
int input_of(const Region& r, const Node* acc) {
  for (size_t i = 0; i < r.leaves.size(); ++i) {
    const Meta* m = meta_if(r.leaves[i]);
    if (m && m->grad_accumulator.lock().get() == acc) return int(i);
  }
  return -1;
}

class RecomputeNode final : public Node {
 public:
  RecomputeNode(std::string name, std::vector<Edge> next, std::vector<int> sources,
                std::vector<TensorGeometry> outputs, std::vector<size_t> output_index,
                RecomputeFn fn, std::vector<Tensor> inputs, std::vector<bool> needs,
                GeneratorStates rng)
      : Node(std::move(name), std::move(next), std::move(outputs)),
        sources_(std::move(sources)),
        output_index_(std::move(output_index)),
        fn_(std::move(fn)),
        inputs_(std::move(inputs)),
        needs_(std::move(needs)),
        rng_(std::move(rng)) {}

  Grads apply(Grads&& grads) override {
    FATHOM_CHECK(fn_, "backward through a graph that was already freed; pass retain_graph=true "
                      "to the first backward (", name(), ")");
    Region r;
    {
      RngReplay replay(rng_);
      r = run_region(fn_, inputs_, needs_);
    }
    // The rerun must leave through the edges the forward did; its input leaves are new, so
    // their edges are looked up again.
    std::vector<Edge> at = next();
    for (size_t k = 0; k < at.size(); ++k) {
      if (sources_[k] < 0) continue;
      const Meta* m = meta_if(r.leaves[size_t(sources_[k])]);
      at[k] = {m ? m->grad_accumulator.lock() : nullptr, 0};
    }
    std::set<std::pair<Node*, uint32_t>> want, got;
    for (const Edge& e : at) want.insert({e.fn.get(), e.input_nr});
    for (const Edge& e : r.boundary) got.insert({e.fn.get(), e.input_nr});
    FATHOM_CHECK(want == got && !want.count({nullptr, 0}), name(),
                 ": the rerun during backward reached other tensors than the forward did (",
                 got.size(), " edges out of the region, not ", want.size(),
                 "); the region must compute the same thing twice: the same ops on the same "
                 "tensors, with its modules in the same train()/eval() mode");
    std::vector<Tensor> roots;
    for (size_t j = 0; j < output_index_.size(); ++j) {
      const Tensor& o = r.outputs.size() > output_index_[j] ? r.outputs[output_index_[j]] : Tensor();
      FATHOM_CHECK(o.defined() && o.requires_grad() && o.shape() == outputs()[j].shape,
                   name(), ": the rerun's output ", output_index_[j], " is ",
                   o.defined() ? o.desc() : std::string("undefined"),
                   ", not the forward's ", shape_str(outputs()[j].shape), " that requires grad");
      roots.push_back(o);
    }
    return grad(roots, grads, at);
  }

  void release() override {
    fn_ = nullptr;
    inputs_.clear();
  }

 private:
  std::vector<int> sources_;          // per edge: the input it stands for, or -1 (outside)
  std::vector<size_t> output_index_;  // per node output: which of fn's outputs
  RecomputeFn fn_;
  std::vector<Tensor> inputs_;        // without history: all the region keeps
  std::vector<bool> needs_;           // which inputs required grad
  GeneratorStates rng_;
};

}  // namespace

std::vector<Tensor> recompute(const std::string& name, RecomputeFn fn,
                              const std::vector<Tensor>& inputs) {
  FATHOM_CHECK(fn != nullptr, "recompute ", name, ": empty function");
  if (!is_grad_enabled()) return fn(inputs);
  // The forward records its graph once, to find the edges out of the region (the parameters it
  // reads included); the graph is dropped when this returns, keeping only the inputs.
  std::vector<bool> needs;
  for (const Tensor& t : inputs) needs.push_back(t.defined() && t.requires_grad());
  Region r;
  GeneratorStates rng;
  {
    RngRecorder recorder;
    r = run_region(fn, inputs, needs);
    rng = recorder.states();
  }
  std::vector<Edge> next;
  std::vector<int> sources;
  for (const Edge& e : r.boundary) {
    int i = input_of(r, e.fn.get());
    sources.push_back(i);
    next.push_back(i >= 0 ? gradient_edge(inputs[size_t(i)]) : e);
  }
  std::vector<Tensor> outs;
  std::vector<TensorGeometry> geo;
  std::vector<size_t> index;
  for (size_t j = 0; j < r.outputs.size(); ++j) {
    const Tensor& o = r.outputs[j];
    outs.push_back(saved(o));
    if (o.defined() && o.requires_grad()) {
      geo.push_back(TensorGeometry::of(o));
      index.push_back(j);
    }
  }
  if (index.empty()) return outs;  // nothing to differentiate: as a plain call
  std::vector<Tensor> kept;
  for (const Tensor& t : inputs) kept.push_back(saved(t));
  auto node = std::make_shared<RecomputeNode>("recompute " + name, std::move(next),
                                              std::move(sources), std::move(geo), index,
                                              std::move(fn), std::move(kept), std::move(needs),
                                              std::move(rng));
  for (size_t k = 0; k < index.size(); ++k) {
    Meta& m = meta(outs[index[k]]);
    m.grad_fn = node;
    m.output_nr = uint32_t(k);
  }
  return outs;
}

Tensor recompute(const std::string& name, std::function<Tensor(const Tensor&)> fn, const Tensor& x) {
  FATHOM_CHECK(fn != nullptr, "recompute ", name, ": empty function");
  auto one = [fn = std::move(fn)](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; };
  return recompute(name, RecomputeFn(std::move(one)), {x})[0];
}

}  // namespace fathom::autograd
