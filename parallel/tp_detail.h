#pragma once
// Internal to the tensor-parallel files: the raw (non-recording) collectives they share.
#include "fathom/parallel/tensor_parallel.h"

namespace fathom::parallel::detail {

void check_group(const GroupPtr& g, const char* op);
// A fresh reduced copy of t (t itself for a group of one); waits for the collective.
Tensor allreduced(const Tensor& t, comm::ProcessGroup& g, comm::ReduceOp op);
// x [..., n] on every rank -> [..., n * size], rank r's block at columns [r n, (r + 1) n).
Tensor gathered_last_dim(const Tensor& x, comm::ProcessGroup& g);
// This rank's block [..., n / size] of x [..., n], contiguous.
Tensor own_block_last_dim(const Tensor& x, comm::ProcessGroup& g);

}  // namespace fathom::parallel::detail
