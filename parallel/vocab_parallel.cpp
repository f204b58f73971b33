// The vocabulary-parallel embedding and cross-entropy (Megatron's VocabParallelEmbedding and
// _VocabParallelCrossEntropy): each rank holds the vocabulary entries [start, end).
#include <ostream>

#include "fathom/autograd/node.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/nn.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"
#include "fathom/nn/init.h"
#include "fathom/parallel/tensor_parallel.h"
#include "fathom/parallel/tp_detail.h"

namespace fathom::parallel {

namespace {

bool is_integer_ids(DType t) { return t == DType::i64 || t == DType::i32; }

// ids - start, clamped into [0, n): a valid row for every id; `outside` marks the ids that are
// not this rank's (bool, same shape).
std::pair<Tensor, Tensor> local_ids(const Tensor& ids, Range r) {
  Tensor local = ops::to(ops::binary(BinaryOp::sub, ids, double(r.start)), DType::i64);
  Tensor clamped = ops::clamp(local, 0.0, double(r.size() - 1));
  return {clamped, ops::binary(BinaryOp::ne, local, clamped)};
}

}  // namespace

// ---- VocabParallelEmbedding ----

VocabParallelEmbedding::VocabParallelEmbedding(int64_t num, int64_t dim, GroupPtr g,
                                               Generator* gen)
    : Module("VocabParallelEmbedding"), num_embeddings(num), embedding_dim(dim),
      group(std::move(g)) {
  detail::check_group(group, "VocabParallelEmbedding");
  FATHOM_CHECK(dim > 0, "VocabParallelEmbedding: embedding_dim ", dim, " must be positive");
  rows = shard_range(num, *group, "VocabParallelEmbedding: num_embeddings");
  weight = register_parameter("weight", empty({rows.size(), dim}));
  nn::init::normal_(weight, 0.0, 1.0, gen);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) {
  FATHOM_CHECK(is_integer_ids(ids.dtype()), "VocabParallelEmbedding: ids ", ids.desc(),
               " must be integer (i64 or i32)");
  if (group->size() == 1) return embedding(weight, ids);
  auto [local, outside] = local_ids(ids, rows);
  // Zeros (and no gradient) for the ids another rank holds; the sum over ranks then has each
  // id's row exactly once.
  Tensor part = masked_fill(embedding(weight, local), outside.unsqueeze(-1), 0.0);
  return reduce_from_tp_region(part, group);
}

void VocabParallelEmbedding::pretty_print(std::ostream& os) const {
  os << "VocabParallelEmbedding(num_embeddings=" << num_embeddings << ", embedding_dim="
     << embedding_dim << ", rows=[" << rows.start << ", " << rows.end << "))";
}

// ---- vocab_parallel_cross_entropy ----

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets,
                                    const GroupPtr& group, int64_t ignore_index) {
  detail::check_group(group, "vocab_parallel_cross_entropy");
  comm::ProcessGroup& g = *group;
  FATHOM_CHECK(logits.dim() >= 1 && is_floating(logits.dtype()),
               "vocab_parallel_cross_entropy: logits ", logits.desc(),
               " must be floating point [..., V / tp]");
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  FATHOM_CHECK(targets.shape() == lead && is_integer_ids(targets.dtype()),
               "vocab_parallel_cross_entropy: targets ", targets.desc(),
               " must be integer with the logits' leading shape ", shape_str(lead),
               " (logits ", logits.desc(), ")");
  int64_t Vl = logits.size(-1), N = targets.numel();
  FATHOM_CHECK(Vl > 0, "vocab_parallel_cross_entropy: logits ", logits.desc(),
               " have no vocabulary entries");
  Range r{int64_t(g.rank()) * Vl, int64_t(g.rank() + 1) * Vl};
  DType ct = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Device dev = logits.device();

  Tensor sm, flat, hit, valid, count;  // what backward needs
  Tensor loss;
  {
    NoGradGuard no_grad;
    Tensor x = ops::contiguous(ops::to(ops::reshape(logits, {N, Vl}), ct));  // [N, Vl]
    // Shifting by the global row max keeps exp() in range; it cancels in the loss.
    Tensor m = detail::allreduced(ops::amax(x, {1}), g, comm::ReduceOp::max);      // [N]
    Tensor shifted = ops::binary(BinaryOp::sub, x, ops::view(m, {N, 1}));            // [N, Vl]
    Tensor t = ops::to(ops::reshape(targets, {N}), DType::i64);
    auto [local, outside] = local_ids(t, r);
    // Row n's target logit is shifted[n, local[n]] on the one rank holding it, 0 elsewhere.
    flat = ops::binary(BinaryOp::add, ops::binary(BinaryOp::mul, arange(N, {DType::i64, dev}),
                                                  double(Vl)), local);              // [N]
    Tensor picked = ops::index_select(ops::view(shifted, {N * Vl}), 0, flat);        // [N]
    picked = detail::allreduced(ops::masked_fill(picked, outside, 0.0), g, comm::ReduceOp::sum);
    Tensor e = ops::unary(UnaryOp::exp, shifted);
    Tensor sum_exp = detail::allreduced(ops::sum(e, {1}), g, comm::ReduceOp::sum);  // [N]
    Tensor per_row = ops::binary(BinaryOp::sub, ops::unary(UnaryOp::log, sum_exp), picked);
    valid = ops::to(ops::binary(BinaryOp::ne, t, double(ignore_index)), ct);        // [N]
    count = ops::sum(valid);  // a 0-d tensor: no host sync; NaN loss when 0, as cross_entropy
    loss = ops::binary(BinaryOp::div, ops::sum(ops::binary(BinaryOp::mul, per_row, valid)),
                       count);
    sm = ops::binary(BinaryOp::div, e, ops::view(sum_exp, {N, 1}));
    hit = ops::to(ops::binary(BinaryOp::eq, outside, 0.0), ct);  // this rank has the target
  }
  Shape shape = logits.shape();
  return autograd::record(
      "vocab_parallel_cross_entropy", {logits}, loss,
      [sm, flat, hit, valid, count, shape, N, Vl](const autograd::Grads& gr) {
        // d loss / d logits[n, v] = (softmax[n, v] - [v == target n]) * valid[n] / count,
        // on this rank's columns only: the softmax's denominator is already global.
        Tensor grad = ops::clone(sm);
        ops::index_add_(ops::view(grad, {N * Vl}), 0, flat,
                        ops::binary(BinaryOp::mul, hit, -1.0));
        Tensor scale = ops::binary(BinaryOp::mul, valid,
                                   ops::binary(BinaryOp::div, ops::to(gr[0], valid.dtype()), count));
        grad = ops::binary(BinaryOp::mul, grad, ops::view(scale, {N, 1}));
        return autograd::Grads{ops::view(grad, shape)};
      });
}

}  // namespace fathom::parallel
