#pragma once
// Collectives as differentiable ops, for layers whose forward reads what other ranks hold
// (SyncBatchNorm's batch statistics; tensor-parallel layers later).
#include <memory>

#include "fathom/comm/process_group.h"
#include "fathom/core/tensor.h"

namespace fathom::parallel {

// The sum of x over the ranks of `group`, as a new tensor (x is not written). Every rank must
// call it in the same order, as any collective. Backward is again an all-reduce sum: each
// rank's output feeds that rank's loss, and the total loss is the sum over ranks, so the
// gradient of x on one rank is the sum of all ranks' output gradients.
Tensor all_reduce_sum(const Tensor& x, const std::shared_ptr<comm::ProcessGroup>& group);

}  // namespace fathom::parallel
