#pragma once
// Tensor parallelism (Megatron-LM's, without sequence parallelism): layers whose weights are
// split across the ranks of a tensor-parallel group, and the conjugate communication ops that
// make their forward and backward exact.
//
//   copy_to_tp_region      forward: identity        backward: all-reduce (sum) over the group
//   reduce_from_tp_region  forward: all-reduce      backward: identity
//   gather_from_tp_region  forward: all-gather the last dim   backward: keep this rank's slice
//   scatter_to_tp_region   forward: keep this rank's slice    backward: all-gather the last dim
//
// A Megatron MLP is ColumnParallelLinear (no gather) -> GELU -> RowParallelLinear
// (input_is_parallel): one all-reduce forward (in the row layer) and one backward (in the
// column layer's copy_to_tp_region). Every rank of the group passes the same input and gets
// the same output; in between each rank holds its slice of the features.
//
// Collectives go through comm::ProcessGroup (MPI for CPU tensors, NCCL for CUDA ones), are
// waited on before the op returns, and are issued in the same order on every rank because
// every rank runs the same graph. Any group works, the world or Mesh::tp_group(); a group of
// one makes every op the plain dense one.
#include <memory>

#include "fathom/comm/process_group.h"
#include "fathom/core/random.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::parallel {

using GroupPtr = std::shared_ptr<comm::ProcessGroup>;

// ---- communication ops (differentiable; parallel/tensor_parallel.cpp) ----
Tensor copy_to_tp_region(const Tensor& x, const GroupPtr& group);
Tensor reduce_from_tp_region(const Tensor& x, const GroupPtr& group);
// x [..., n] on every rank -> [..., n * size], rank r's block at columns [r n, (r + 1) n).
Tensor gather_from_tp_region(const Tensor& x, const GroupPtr& group);
// x [..., n * size] (the same on every rank) -> this rank's block [..., n].
Tensor scatter_to_tp_region(const Tensor& x, const GroupPtr& group);

// [start, end) of this rank's block when `n` features are split evenly over `group`; an error
// naming `what` when n does not divide.
struct Range {
  int64_t start = 0, end = 0;
  int64_t size() const { return end - start; }
};
Range shard_range(int64_t n, const comm::ProcessGroup& group, const char* what);

// ---- layers ----

struct ParallelLinearOptions {
  ParallelLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  FATHOM_ARG(int64_t, in_features);   // of the whole (dense) layer
  FATHOM_ARG(int64_t, out_features);  // of the whole (dense) layer
  FATHOM_ARG(bool, bias) = true;
  // ColumnParallelLinear: all-gather the output to [..., out_features] (else [..., out / size]).
  FATHOM_ARG(bool, gather_output) = false;
  // RowParallelLinear: the input is already this rank's slice [..., in / size] (else the
  // layer takes [..., in] and keeps its slice).
  FATHOM_ARG(bool, input_is_parallel) = true;
};

// y = x @ W^T + b with W [out, in] split by rows: this rank holds weight [out / size, in] and
// bias [out / size], the rows [r out/size, (r+1) out/size) of the dense layer's. Weights start
// as nn::Linear's (uniform +-1/sqrt(in)), drawn for this shard only; models that need a
// tp-independent init copy their slices in (TPGPT does).
class ColumnParallelLinear : public nn::Module {
 public:
  ColumnParallelLinear(const ParallelLinearOptions& options, GroupPtr group,
                       Generator* gen = nullptr);
  // [..., in] (the same on every rank) -> [..., out / size], or [..., out] with gather_output.
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;

  ParallelLinearOptions options;
  GroupPtr group;
  Range rows;  // of the dense weight held here
  Tensor weight, bias;
};

// y = x @ W^T + b with W [out, in] split by columns: this rank holds weight [out, in / size]
// (columns [r in/size, (r+1) in/size)) and the whole bias [out]. The partial products are
// all-reduced, then the bias is added once: it is replicated, and its gradient (the reduced
// output's) is the same on every rank.
class RowParallelLinear : public nn::Module {
 public:
  RowParallelLinear(const ParallelLinearOptions& options, GroupPtr group,
                    Generator* gen = nullptr);
  // [..., in / size] (input_is_parallel) or [..., in] -> [..., out], the same on every rank.
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;

  ParallelLinearOptions options;
  GroupPtr group;
  Range cols;  // of the dense weight held here
  Tensor weight, bias;
};

// An embedding table split by rows (parallel/vocab_parallel.cpp): this rank holds weight
// [V / size, C], the ids [start, end). An id outside that range looks up zeros (and sends no
// gradient); the all-reduce sums the one rank that had it. Initialised N(0, 1) as
// nn::Embedding, for this shard only. ids: integer, any shape, the same on every rank.
class VocabParallelEmbedding : public nn::Module {
 public:
  VocabParallelEmbedding(int64_t num_embeddings, int64_t embedding_dim, GroupPtr group,
                         Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) override;  // [...] -> [..., C], the same on every rank
  void pretty_print(std::ostream& os) const override;

  int64_t num_embeddings, embedding_dim;
  GroupPtr group;
  Range rows;  // the ids this rank holds
  Tensor weight;
};

// Mean cross-entropy of logits split by the last dim (this rank's [..., V / size], vocabulary
// entries [r V/size, (r+1) V/size)) against targets [...] (integer, the same on every rank,
// ignore_index skipped), without ever gathering the full logits: three all-reduces of one
// value per row (max of the logits, sum of their exps, the target's logit), as Megatron's
// _VocabParallelCrossEntropy. Returns the scalar loss (f32, f64 for f64 logits), the same on
// every rank; its backward gives each rank softmax - onehot on its own slice, no communication.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets,
                                    const GroupPtr& group,
                                    int64_t ignore_index = -100);

}  // namespace fathom::parallel
