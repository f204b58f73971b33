#include "fathom/core/ops/nn.h"

#include <limits>
#include <optional>
#include <string>

#include "fathom/core/backend.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"

namespace fathom::ops {

namespace {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  FATHOM_CHECK(a.device() == b.device(), op, ": tensors on different devices: ", a.desc(),
               " and ", b.desc(), "; move one with .to(device)");
}

void check_floating(const char* op, const Tensor& x) {
  FATHOM_CHECK(is_floating(x.dtype()), op, ": expected a floating-point tensor, got ", x.desc());
}

// Statistics and losses are kept in the accumulation type: f32, or f64 for f64 inputs (so
// gradient checks in f64 are not limited by f32 rounding).
DType acc_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// x as [rows, cols] over its last dim; a 0-d tensor is one row of one.
struct Rows {
  int64_t rows, cols;
};
Rows rows_of(const Tensor& x) {
  if (x.dim() == 0) return {1, 1};
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  return {numel_of(lead), x.size(-1)};
}

// Integer indices as contiguous i64, the form every backend kernel takes.
Tensor as_index(const char* op, const char* what, const Tensor& idx) {
  FATHOM_CHECK(idx.dtype() == DType::i64 || idx.dtype() == DType::i32, op, ": ", what,
               " must be i64 or i32, got ", idx.desc());
  return contiguous(to(idx, DType::i64));
}

// Every index in [0, size), or equal to `ignore` when given; else an error naming the first bad
// value (on the CPU) or the extreme one (on a GPU: amin/amax there, two scalars copied back
// instead of the whole index tensor).
void check_range(const char* op, const char* what, const Tensor& idx, int64_t size,
                 const std::string& context, std::optional<int64_t> ignore = std::nullopt) {
  if (idx.numel() == 0) return;
  std::optional<int64_t> bad;
  if (!idx.is_cuda()) {
    const int64_t* p = idx.data<int64_t>();
    for (int64_t i = 0, n = idx.numel(); i < n && !bad; ++i)
      if ((p[i] < 0 || p[i] >= size) && !(ignore && p[i] == *ignore)) bad = p[i];
  } else {
    Tensor v = idx;
    if (ignore)
      v = where(binary(BinaryOp::eq, idx, double(*ignore)), zeros({}, idx.options()), idx);
    int64_t lo = amin(v).item<int64_t>(), hi = amax(v).item<int64_t>();
    if (lo < 0) bad = lo;
    else if (hi >= size) bad = hi;
  }
  FATHOM_CHECK(!bad, op, ": ", what, " ", *bad, " is out of range [0, ", size, ") ", context,
               " (", what, " tensor ", idx.desc(), ")",
               ignore ? detail::concat("; use ignore_index (", *ignore, ") to skip a row") : "");
}

Tensor softmax_forward(const Tensor& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_floating(op, x);
  Rows rc = rows_of(x);
  Tensor y = empty(x.shape(), x.options());
  if (y.numel())
    FATHOM_DISPATCH(x.device(), softmax, view(contiguous(x), {rc.rows, rc.cols}),
                    view(y, {rc.rows, rc.cols}), log);
  return y;
}

Tensor softmax_grad(const Tensor& grad_y, const Tensor& y, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_floating(op, y);
  check_same_device(op, grad_y, y);
  FATHOM_CHECK(grad_y.shape() == y.shape() && grad_y.dtype() == y.dtype(), op, ": grad_y ",
               grad_y.desc(), " does not match y ", y.desc());
  Rows rc = rows_of(y);
  Tensor gx = empty(y.shape(), y.options());
  if (gx.numel())
    FATHOM_DISPATCH(y.device(), softmax_backward, view(contiguous(grad_y), {rc.rows, rc.cols}),
                    view(contiguous(y), {rc.rows, rc.cols}), view(gx, {rc.rows, rc.cols}), log);
  return gx;
}

// weight/bias of a layer norm over C features: [C], x's dtype and device, or undefined.
void check_affine(const char* op, const char* name, const Tensor& p, const Tensor& x,
                  int64_t C) {
  if (!p.defined()) return;
  FATHOM_CHECK(p.shape() == Shape{C} && p.dtype() == x.dtype() && p.device() == x.device(), op,
               ": ", name, " ", p.desc(), " does not match x ", x.desc(), ": expected [", C,
               "] ", dtype_name(x.dtype()), " ", x.device().str());
}

Tensor index_select_impl(const char* op, const char* what, const Tensor& x, int64_t dim,
                         const Tensor& index) {
  FATHOM_CHECK(x.dim() >= 1, op, ": cannot index a 0-d tensor ", x.desc());
  check_same_device(op, x, index);
  dim = x.wrap_dim(dim, op);
  Tensor idx = as_index(op, what, index);
  check_range(op, what, idx, x.size(dim),
              detail::concat("for dim ", dim, " of ", x.desc()));
  Shape lead(x.shape().begin(), x.shape().begin() + dim);
  Shape trail(x.shape().begin() + dim + 1, x.shape().end());
  Shape out_shape = lead;
  out_shape.insert(out_shape.end(), index.shape().begin(), index.shape().end());
  out_shape.insert(out_shape.end(), trail.begin(), trail.end());
  Tensor out = empty(out_shape, x.options());
  if (out.numel()) {
    int64_t A = numel_of(lead), B = numel_of(trail), n = idx.numel();
    FATHOM_DISPATCH(x.device(), index_select, view(contiguous(x), {A, x.size(dim), B}),
                    view(idx, {n}), view(out, {A, n, B}));
  }
  return out;
}

void index_add_impl(const char* op, const char* what, const Tensor& x, int64_t dim,
                    const Tensor& index, const Tensor& src) {
  FATHOM_CHECK(x.dim() >= 1, op, ": cannot index a 0-d tensor ", x.desc());
  check_same_device(op, x, index);
  check_same_device(op, x, src);
  dim = x.wrap_dim(dim, op);
  Shape lead(x.shape().begin(), x.shape().begin() + dim);
  Shape trail(x.shape().begin() + dim + 1, x.shape().end());
  Shape want = lead;
  want.insert(want.end(), index.shape().begin(), index.shape().end());
  want.insert(want.end(), trail.begin(), trail.end());
  FATHOM_CHECK(src.shape() == want && src.dtype() == x.dtype(), op, ": source ", src.desc(),
               " does not match x ", x.desc(), " with dim ", dim, " indexed by ", index.desc(),
               ": expected ", shape_str(want), " ", dtype_name(x.dtype()));
  Tensor idx = as_index(op, what, index);
  check_range(op, what, idx, x.size(dim), detail::concat("for dim ", dim, " of ", x.desc()));
  if (src.numel() == 0) return;
  int64_t A = numel_of(lead), B = numel_of(trail), n = idx.numel();
  // The kernel adds into contiguous memory; a strided x is updated through a copy.
  Tensor xc = contiguous(x);
  FATHOM_DISPATCH(x.device(), index_add, view(xc, {A, x.size(dim), B}), view(idx, {n}),
                  view(contiguous(src), {A, n, B}));
  if (!xc.is_same(x)) copy_(x, xc);
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_forward(x, false); }
Tensor log_softmax(const Tensor& x) { return softmax_forward(x, true); }
Tensor softmax_backward(const Tensor& grad_y, const Tensor& y) {
  return softmax_grad(grad_y, y, false);
}
Tensor log_softmax_backward(const Tensor& grad_y, const Tensor& y) {
  return softmax_grad(grad_y, y, true);
}

std::tuple<Tensor, Tensor, Tensor> layer_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps) {
  check_floating("layer_norm", x);
  FATHOM_CHECK(x.dim() >= 1, "layer_norm: expected at least one dim, got ", x.desc());
  FATHOM_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);
  Rows rc = rows_of(x);
  check_affine("layer_norm", "weight", weight, x, rc.cols);
  check_affine("layer_norm", "bias", bias, x, rc.cols);
  Tensor y = empty(x.shape(), x.options());
  Tensor mean = empty({rc.rows}, {acc_dtype(x.dtype()), x.device()});
  Tensor rstd = empty({rc.rows}, {acc_dtype(x.dtype()), x.device()});
  if (rc.cols == 0) {  // statistics of nothing: 0/0
    fill_(mean, std::numeric_limits<double>::quiet_NaN());
    fill_(rstd, std::numeric_limits<double>::quiet_NaN());
  } else if (rc.rows > 0) {
    auto c = [&](const Tensor& t) { return t.defined() ? contiguous(t) : t; };
    FATHOM_DISPATCH(x.device(), layer_norm, view(contiguous(x), {rc.rows, rc.cols}), c(weight),
                    c(bias), eps, view(y, {rc.rows, rc.cols}), mean, rstd);
  }
  return {y, mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& grad_y, const Tensor& x,
                                                       const Tensor& weight, const Tensor& mean,
                                                       const Tensor& rstd, bool has_bias) {
  const char* op = "layer_norm_backward";
  check_floating(op, x);
  FATHOM_CHECK(x.dim() >= 1, op, ": expected at least one dim, got ", x.desc());
  check_same_device(op, grad_y, x);
  FATHOM_CHECK(grad_y.shape() == x.shape() && grad_y.dtype() == x.dtype(), op, ": grad_y ",
               grad_y.desc(), " does not match x ", x.desc());
  Rows rc = rows_of(x);
  check_affine(op, "weight", weight, x, rc.cols);
  DType st = acc_dtype(x.dtype());
  for (const Tensor* s : {&mean, &rstd})
    FATHOM_CHECK(s->numel() == rc.rows && s->dtype() == st && s->device() == x.device(), op,
                 ": saved statistics ", s->desc(), " do not match x ", x.desc(), ": expected [",
                 rc.rows, "] ", dtype_name(st), " (what layer_norm returned)");
  Tensor gx = empty(x.shape(), x.options());
  Tensor gw = weight.defined() ? empty({rc.cols}, x.options()) : Tensor();
  Tensor gb = has_bias ? empty({rc.cols}, x.options()) : Tensor();
  if (x.numel() == 0) {
    if (gw.defined()) fill_(gw, 0);
    if (gb.defined()) fill_(gb, 0);
  } else {
    FATHOM_DISPATCH(x.device(), layer_norm_backward, view(contiguous(grad_y), {rc.rows, rc.cols}),
                    view(contiguous(x), {rc.rows, rc.cols}),
                    weight.defined() ? contiguous(weight) : weight, contiguous(mean),
                    contiguous(rstd), view(gx, {rc.rows, rc.cols}), gw, gb);
  }
  return {gx, gw, gb};
}

namespace {

// Shared checks of cross_entropy and its backward; returns the targets as contiguous i64.
Tensor checked_targets(const char* op, const Tensor& logits, const Tensor& targets,
                       int64_t ignore_index) {
  check_floating(op, logits);
  check_same_device(op, logits, targets);
  FATHOM_CHECK(logits.dim() == 2, op, ": logits must be [N, C], got ", logits.desc());
  FATHOM_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), op, ": targets ",
               targets.desc(), " do not match logits ", logits.desc(), ": expected [",
               logits.size(0), "]");
  Tensor t = as_index(op, "targets", targets);
  check_range(op, "target", t, logits.size(1), detail::concat("for logits ", logits.desc()),
              ignore_index);
  return t;
}

// Number of targets that count, as a 0-d tensor of dtype dt on the targets' device.
Tensor counted(const Tensor& t, int64_t ignore_index, DType dt) {
  return to(sum(binary(BinaryOp::ne, t, double(ignore_index))), dt);
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  Tensor t = checked_targets("cross_entropy", logits, targets, ignore_index);
  int64_t N = logits.size(0), C = logits.size(1);
  DType lt = acc_dtype(logits.dtype());
  Tensor losses = empty({N}, {lt, logits.device()});
  if (N > 0 && C > 0)
    FATHOM_DISPATCH(logits.device(), cross_entropy, contiguous(logits), t, ignore_index, losses);
  else if (N > 0)  // no classes: validation let through only ignored targets
    fill_(losses, 0);
  // The mean over the counted rows; none counted is 0/0 = NaN, as in PyTorch.
  return binary(BinaryOp::div, sum(losses), counted(t, ignore_index, lt));
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits,
                              const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy_backward";
  Tensor t = checked_targets(op, logits, targets, ignore_index);
  check_same_device(op, grad_loss, logits);
  FATHOM_CHECK(grad_loss.numel() == 1 && is_floating(grad_loss.dtype()), op,
               ": grad_loss must be a one-element float tensor, got ", grad_loss.desc());
  DType lt = acc_dtype(logits.dtype());
  // d(mean)/d(loss_i) = 1/count, folded into one device-side scale: no host sync.
  Tensor scale = binary(BinaryOp::div, reshape(to(grad_loss, lt), {}),
                        counted(t, ignore_index, lt));
  Tensor grad = empty(logits.shape(), logits.options());
  if (grad.numel())
    FATHOM_DISPATCH(logits.device(), cross_entropy_backward, contiguous(logits), t,
                    ignore_index, scale, grad);
  return grad;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  return index_select_impl("index_select", "index", x, dim, index);
}

void index_add_(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  index_add_impl("index_add_", "index", x, dim, index, src);
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  FATHOM_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ",
               weight.desc());
  return index_select_impl("embedding", "id", weight, 0, ids);
}

Tensor embedding_backward(const Tensor& grad_y, const Tensor& ids, int64_t num_embeddings) {
  const char* op = "embedding_backward";
  FATHOM_CHECK(num_embeddings >= 0, op, ": num_embeddings must be >= 0, got ", num_embeddings);
  check_floating(op, grad_y);
  Shape want = ids.shape();
  want.push_back(grad_y.dim() ? grad_y.size(-1) : 0);
  FATHOM_CHECK(grad_y.dim() == ids.dim() + 1 && grad_y.shape() == want, op, ": grad_y ",
               grad_y.desc(), " does not match ids ", ids.desc(), ": expected ids' shape + [dim]");
  Tensor grad_w = zeros({num_embeddings, grad_y.size(-1)}, grad_y.options());
  index_add_impl(op, "id", grad_w, 0, ids, grad_y);
  return grad_w;
}

}  // namespace fathom::ops
