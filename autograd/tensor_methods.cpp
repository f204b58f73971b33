// The autograd-state methods of Tensor (declared in core/tensor.h). The differentiable view and
// reduction methods sit with their backward in autograd/ops/shape.cpp and reduce.cpp.
#include "fathom/autograd/engine.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/meta.h"
#include "fathom/autograd/node.h"

namespace fathom {

bool Tensor::requires_grad() const {
  const autograd::Meta* m = autograd::meta_if(*this);
  return m && (m->requires_grad || m->grad_fn);
}

Tensor& Tensor::requires_grad_(bool on) {
  autograd::Meta* m = autograd::meta_if(*this);
  if (m && m->grad_fn) {
    FATHOM_CHECK(on, "requires_grad_(false): ", desc(), " is not a leaf (it was computed by ",
                 m->grad_fn->name(), "); use detach() for a copy without history");
    return *this;
  }
  FATHOM_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can "
               "require grad, got ", desc());
  if (on || m) autograd::meta(*this).requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const {
  const autograd::Meta* m = autograd::meta_if(*this);
  return !m || !m->grad_fn;
}

Tensor Tensor::grad() const {
  const autograd::Meta* m = autograd::meta_if(*this);
  return m ? m->grad : Tensor();
}

void Tensor::zero_grad() {
  if (autograd::Meta* m = autograd::meta_if(*this)) m->grad = Tensor();
}

Tensor Tensor::detach() const { return autograd::saved(*this); }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

}  // namespace fathom
