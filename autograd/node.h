#pragma once
// The graph: a Node is one recorded op's backward. It takes the gradients of the op's outputs
// and returns the gradients of its inputs, which flow along `next` edges to the nodes that
// produced those inputs (or to a leaf's AccumulateGrad).
//
// Writing a differentiable op (see autograd/ops/*.cpp for many):
//
//   Tensor y = ops::binary(BinaryOp::mul, a, b);               // raw forward
//   if (!autograd::needs_grad({a, b})) return y;
//   return autograd::record("mul", {a, b}, y,
//       [a = autograd::saved(a), b = autograd::saved(b)](const Grads& g) -> Grads {
//         return {ops::binary(BinaryOp::mul, g[0], b), ops::binary(BinaryOp::mul, g[0], a)};
//       });
//
// Backward functions run under NoGradGuard and should use raw fathom::ops kernels. They may
// return gradients in the broadcast shape or promoted dtype: the engine sums them down
// (ops::sum_to) and casts them to what each input was. Capture tensors through saved(): it
// drops their autograd history, so a node never keeps another part of the graph alive and an
// op that saves its own output makes no reference cycle.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fathom/autograd/meta.h"
#include "fathom/core/tensor.h"

namespace fathom::autograd {

using Grads = std::vector<Tensor>;
// Gradients of the outputs (one per output, never undefined) -> gradients of the inputs (one
// per input; undefined where an input needs none).
using BackwardFn = std::function<Grads(const Grads& grad_outputs)>;

struct Edge {
  std::shared_ptr<Node> fn;  // null: the input needs no gradient
  uint32_t input_nr = 0;     // which of fn's outputs (fn's "input" during backward)
};

// What a forward output looked like, so a gradient can be checked, reduced and cast to it, and
// zeros made for an output nobody used.
struct TensorGeometry {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
  static TensorGeometry of(const Tensor& t) { return {t.shape(), t.dtype(), t.device()}; }
};

class Node {
 public:
  Node(std::string name, std::vector<Edge> next, std::vector<TensorGeometry> outputs);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads: one per output, already summed over consumers, shaped and typed like the output.
  virtual Grads apply(Grads&& grads) = 0;
  // Drops saved tensors once the node has run (unless retain_graph).
  virtual void release() {}
  virtual bool is_accumulator() const { return false; }

  const std::string& name() const { return name_; }
  const std::vector<Edge>& next() const { return next_; }
  const std::vector<TensorGeometry>& outputs() const { return outputs_; }
  // Creation order: the engine runs later nodes first among those ready, as PyTorch does.
  uint64_t sequence_nr() const { return sequence_nr_; }

  // Non-leaf tensors that asked to retain_grad(): output index -> that tensor's Meta.
  std::vector<std::pair<uint32_t, std::weak_ptr<Meta>>> retained;

 private:
  std::string name_;
  std::vector<Edge> next_;
  std::vector<TensorGeometry> outputs_;
  uint64_t sequence_nr_;
};

// A node whose backward is a lambda; the lambda's captures are the saved tensors.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, std::vector<Edge> next, std::vector<TensorGeometry> outputs,
               BackwardFn fn);
  Grads apply(Grads&& grads) override;
  void release() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// The sink of a leaf: adds the incoming gradient into leaf.grad, then fires the leaf's
// post-accumulate hooks. The engine runs it as soon as it is ready (all its edges delivered).
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  Grads apply(Grads&& grads) override;
  bool is_accumulator() const override { return true; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The sequence number the next node will get: nodes numbered from here on were made after
// this call (recompute tells the nodes of its own region by it).
uint64_t next_sequence_nr();

// True when grad mode is on and some defined input requires grad.
bool needs_grad(const std::vector<Tensor>& inputs);
// A handle to t's data without its autograd history (undefined stays undefined).
Tensor saved(const Tensor& t);
// The edge a gradient for t flows along: t's grad_fn, its leaf accumulator, or none.
Edge gradient_edge(const Tensor& t);

// Makes `outputs` the results of a node `name` over `inputs` with backward `fn`. Outputs are
// returned as fresh handles (sharing storage), so a forward that returned an input unchanged
// never rewires that input. A no-op (outputs returned as they are) when !needs_grad(inputs).
std::vector<Tensor> record(std::string name, const std::vector<Tensor>& inputs,
                           std::vector<Tensor> outputs, BackwardFn fn);
Tensor record(std::string name, const std::vector<Tensor>& inputs, const Tensor& output,
              BackwardFn fn);

}  // namespace fathom::autograd
