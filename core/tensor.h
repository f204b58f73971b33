#pragma once
// Tensor: a cheap handle (shared ownership of a TensorImpl). Copying a Tensor copies the handle;
// views (reshape, transpose, narrow, expand) share the Storage with their base.
//
// Two kinds of methods live here:
//  - metadata and element access, defined in core/tensor.cpp;
//  - differentiable methods (reshape, sum, backward, ...), declared here for a PyTorch-shaped
//    API but defined in autograd/tensor_methods.cpp, because they record the autograd graph.
//    Core code never calls them: it uses the raw kernels in fathom::ops.
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "fathom/core/device.h"
#include "fathom/core/dtype.h"
#include "fathom/core/error.h"
#include "fathom/core/indexing.h"
#include "fathom/core/storage.h"

namespace fathom {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[4, 8]"
int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& s);

namespace autograd {
struct Meta;  // grad, grad_fn, hooks: defined in autograd/meta.h
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements, into storage
  DType dtype = DType::f32;
  std::shared_ptr<autograd::Meta> autograd;  // null until the tensor takes part in autograd
};

// What a factory makes: zeros({2, 3}, kBFloat16), zeros({2, 3}, {kFloat32, Device::cuda()}).
struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  TensorOptions() = default;
  TensorOptions(DType t) : dtype(t) {}
  TensorOptions(Device d) : device(d) {}
  TensorOptions(DType t, Device d) : dtype(t), device(d) {}
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t size(int64_t dim) const { return shape()[wrap_dim(dim)]; }
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t numel() const { return numel_of(shape()); }
  const Shape& strides() const { return impl().strides; }
  int64_t stride(int64_t dim) const { return strides()[wrap_dim(dim)]; }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * itemsize(dtype()); }
  TensorOptions options() const { return {dtype(), device()}; }

  // Raw pointer to the first element (storage + offset). Any device.
  void* data_ptr() const;
  // Typed pointer; throws if T does not match dtype().
  template <class T> T* data() const;
  // The value of a one-element tensor, converted to T; copies from the GPU if needed.
  template <class T> T item() const;

  // Negative dims count from the end; throws naming the op when out of range.
  int64_t wrap_dim(int64_t dim, const char* op = "dim") const;

  std::string str() const;   // values, like PyTorch's print
  std::string desc() const;  // "[4, 8] f32 cpu", for error messages

  TensorImpl& impl() const {
    FATHOM_CHECK(impl_, "use of an undefined Tensor (default-constructed or moved from)");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- Differentiable methods: defined in autograd/tensor_methods.cpp ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const;
  Tensor grad() const;           // undefined until a backward pass reaches this leaf
  void zero_grad();              // drops the gradient (like set_to_none=True)
  Tensor detach() const;         // shares storage, no grad history
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;  // throws if the strides do not allow a view
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor to(Device device, DType dtype) const;  // one conversion, not two
  Tensor to(TensorOptions options) const { return to(options.device, options.dtype); }
  Tensor clone() const;  // a fresh contiguous copy; gradients pass straight through

  // Basic indexing (core/indexing.h): x.index({Slice(0, 2), 1, Ellipsis, None}) is a view
  // sharing x's storage; the gradient flows back into x's shape.
  Tensor index(const std::vector<indexing::TensorIndex>& indices) const;

  // ---- In place (also in autograd/tensor_methods.cpp) ----
  // Not recorded in the graph. So that a gradient is never silently wrong, they refuse, while
  // grad mode is on, to write into a tensor that requires grad or to copy from one; wrap the
  // write in a NoGradGuard (weight init, optimizer updates) or use an out-of-place op.
  // Like PyTorch they are const: the handle is not changed, the elements are.
  const Tensor& copy_(const Tensor& src) const;  // src broadcasts; dtype and device convert
  const Tensor& fill_(double value) const;
  const Tensor& zero_() const { return fill_(0.0); }
  // index(indices) = value: the view written in place (value broadcasts to it).
  const Tensor& index_put_(const std::vector<indexing::TensorIndex>& indices,
                           const Tensor& value) const;
  const Tensor& index_put_(const std::vector<indexing::TensorIndex>& indices, double value) const;
  Tensor sum(const Shape& dims = {}, bool keepdim = false) const;   // {} = all dims
  Tensor mean(const Shape& dims = {}, bool keepdim = false) const;
  Tensor amax(const Shape& dims = {}, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;           // never differentiable

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

template <class T>
T* Tensor::data() const {
  FATHOM_CHECK(dtype() == dtype_of<T>::value, "Tensor::data<", dtype_name(dtype_of<T>::value),
               ">: tensor is ", desc());
  return static_cast<T*>(data_ptr());
}

}  // namespace fathom
