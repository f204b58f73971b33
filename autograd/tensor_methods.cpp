// The autograd-state and in-place methods of Tensor (declared in core/tensor.h). The differentiable view and
// reduction methods sit with their backward in autograd/ops/shape.cpp and reduce.cpp.
#include "fathom/autograd/engine.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/meta.h"
#include "fathom/autograd/node.h"
#include "fathom/core/ops/shape.h"

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

// ---- in place ----

// In-place writes are not recorded, so while grad mode is on they could leave a wrong gradient
// behind without a word: writing into a tensor that requires grad (its gradient would ignore
// the write), or copying from one (its gradient would miss this use). Refused instead.
static void check_in_place(const char* op, const Tensor& dst, const Tensor* src = nullptr) {
  if (!autograd::is_grad_enabled()) return;
  FATHOM_CHECK(!dst.requires_grad(), op, ": cannot write in place into ", dst.desc(),
               ", which requires grad: in-place ops are not recorded by autograd. Wrap the write "
               "in a NoGradGuard (e.g. to initialise a parameter) or use an out-of-place op");
  FATHOM_CHECK(!src || !src->requires_grad(), op, ": the source ", src->desc(),
               " requires grad, but in-place ops are not recorded, so no gradient would reach "
               "it; copy from src.detach() or inside a NoGradGuard, or use an out-of-place op");
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_in_place("copy_", *this, &src);
  ops::copy_(*this, src);
  return *this;
}

const Tensor& Tensor::fill_(double value) const {
  check_in_place("fill_", *this);
  ops::fill_(*this, value);
  return *this;
}

const Tensor& Tensor::index_put_(const std::vector<indexing::TensorIndex>& indices,
                                 const Tensor& value) const {
  check_in_place("index_put_", *this, &value);
  ops::copy_(ops::index(*this, indices), value);
  return *this;
}

const Tensor& Tensor::index_put_(const std::vector<indexing::TensorIndex>& indices,
                                 double value) const {
  check_in_place("index_put_", *this);
  ops::fill_(ops::index(*this, indices), value);
  return *this;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

}  // namespace fathom
