// DistributedDataParallel's side of ZeRO (docs/zero.md), called by a DistributedOptimizer when
// it is built: buckets padded so each rank owns an equal contiguous block of each, parameters
// moved into flat buffers in the buckets' layout (so updated blocks are all-gathered in place,
// as Megatron-Core's param buffer is), and for ZeRO-2 a reduce-scatter into a per-rank block in
// place of the all-reduce, the full buffer living only while backward fills it.
#include <cstring>

#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/meta.h"
#include "fathom/comm/comm.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/ddp.h"

namespace fathom::parallel {

void DistributedDataParallel::shard(int stage) {
  const char* who = "DistributedOptimizer";
  FATHOM_CHECK(stage == 1 || stage == 2, who, ": the ZeRO stage must be 1 or 2, got ", stage);
  FATHOM_CHECK(zero_stage_ == 0, who, ": this DDP is sharded already (ZeRO-", zero_stage_,
               ", by another DistributedOptimizer); one DistributedOptimizer per DDP");
  FATHOM_CHECK(stats_.step == 0 && reset_pending_ && !in_backward_, who, ": build it before the "
               "first training step: its shards are cut from DDP's initial buckets");
  FATHOM_CHECK(!optimizer_, who, ": an optimizer is attach()ed to this DDP; the DistributedOptimizer "
               "takes its place (build it instead of the other one)");
  FATHOM_CHECK(stage == 1 || !o_.compressor(), who, ": ZeRO-2 reduce-scatters the gradients, and ",
               o_.compressor() ? o_.compressor()->name() : "", " compression has none (its kept "
               "values are summed by an all-reduce); use ZeRO stage 1, which compresses as plain DDP "
               "does, or no compression");
  for (const Param& p : params_)
    FATHOM_CHECK(p.tensor.dtype() == params_[0].tensor.dtype(), who, ": parameters of different "
                 "dtypes ('", params_[0].name, "' ", params_[0].tensor.desc(), ", '", p.name, "' ",
                 p.tensor.desc(), "); the flat parameter buffers hold one dtype: convert the model "
                 "to one (model->to(dtype)) before building DDP");
  // Every rank must shard alike, or the collectives would not match.
  Device dev = params_[0].tensor.device();
  Tensor mine = ops::to(from_vector(std::vector<int64_t>{stage}, {1}), dev);
  Tensor all = empty({int64_t(group_->size())}, {DType::i64, dev});
  group_->allgather(all, mine)->wait();
  std::vector<std::string> per_rank;
  for (double v : to_vector(all)) per_rank.push_back("ZeRO-" + std::to_string(int64_t(v)));
  std::string bad = comm::describe_disagreement("stage", per_rank);
  FATHOM_CHECK(bad.empty(), who, ": the ranks of group '", group_->name(), "' differ (this is rank ",
               group_->rank(), "):", bad);

  std::vector<int> order = bucket_order();
  zero_stage_ = stage;
  // The layout is fixed from here: a rebuild would move shards, and their optimizer state,
  // between ranks (Megatron-Core's buckets are fixed too).
  rebuilt_ = true;
  ready_order_.clear();
  build_buckets(order);
  const int64_t world = group_->size();
  NoGradGuard no_grad;
  for (Bucket& b : buckets_) {
    {
      memory::Scope tag(memory::Category::parameters);
      b.params_flat = zeros({b.numel}, {params_[0].tensor.dtype(), dev});
    }
    for (int i : b.params) {
      Param& p = params_[i];
      ops::copy_(ops::view(ops::narrow(b.params_flat, 0, p.offset, p.tensor.numel()), p.tensor.shape()),
                 p.tensor);
      // Every handle to the parameter (the module's, an optimizer's) shares this TensorImpl, so
      // all of them now see the flat buffer; the old storage is freed with its last view.
      TensorImpl& impl = p.tensor.impl();
      impl.storage = b.params_flat.impl().storage;
      impl.offset = b.params_flat.offset() + p.offset;
      impl.strides = contiguous_strides(impl.shape);
    }
    if (stage == 2) {
      memory::Scope tag(memory::Category::gradients);
      b.grad_shard = zeros({b.numel / world}, {o_.grad_dtype(), dev});
    }
  }
}

Tensor& DistributedDataParallel::grad_buffer(int k) {
  Bucket& b = buckets_[size_t(k)];
  if (!b.buffer.defined()) {
    memory::Scope tag(memory::Category::gradients);
    b.buffer = empty({b.numel}, {o_.grad_dtype(), params_[0].tensor.device()});
    // Each slot is overwritten by its first gradient (or zeroed if it gets none); the padding
    // belongs to no parameter and must not carry garbage into the reduction.
    const Param& last = params_[size_t(b.params.back())];
    int64_t used = last.offset + last.tensor.numel();
    if (used < b.numel) ops::fill_(ops::narrow(b.buffer, 0, used, b.numel - used), 0);
  }
  return b.buffer;
}

void DistributedDataParallel::release_grad_buffer(int k) {
  Bucket& b = buckets_[size_t(k)];
  if (!b.buffer.defined()) return;
  for (int i : b.params) autograd::meta(params_[size_t(i)].tensor).grad = Tensor();  // its slot views
  b.buffer = Tensor();
}

void DistributedDataParallel::wait_param_gather() {
  std::vector<comm::WorkPtr> works;
  for (Bucket& b : buckets_)
    if (b.gather) works.push_back(std::move(b.gather)), b.gather.reset();
  comm::wait_all(works);
}

}  // namespace fathom::parallel
