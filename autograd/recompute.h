#pragma once
// Activation recomputation (torch.utils.checkpoint, Megatron's recompute): a region whose
// forward keeps only its inputs, and is run again during backward to rebuild what its backward
// needs. Memory for time: the region's activations live only while its backward runs.
//
//   Tensor y = autograd::recompute("block", [&](const Tensor& x) { return block->forward(x); }, x);
//
// - Random draws are replayed: every Generator the region draws from (dropout's, the default
//   one) is recorded at the forward and set back to that state for the rerun, then restored, so
//   masks are identical and the run's random stream is the one a plain run would see.
// - To the rest of the graph the region is one node whose edges are its inputs' and every
//   outside tensor it read that needs a gradient (parameters, found by recording the forward).
//   The rerun computes the gradients for those edges (autograd::grad) and hands them on, so a
//   leaf's gradient lands once per backward, through the ordinary accumulator: its hooks (DDP's)
//   fire once, after its gradient is final, exactly as without recomputation.
// - With grad mode off it is a plain call. Regions nest (an inner one recomputes inside the
//   outer's rerun). retain_graph reruns it on each backward.
// - fn must compute the same thing twice: same ops on the same tensors, and the modules it
//   uses not switched between train() and eval() before the backward. A rerun that reaches
//   other tensors than the forward did is an error naming the region. Generators it draws from
//   must outlive its backward, and no other thread may draw from them meanwhile.
#include <functional>
#include <string>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::autograd {

using RecomputeFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

// Outputs of fn(inputs); with grad mode on, those that require grad hang on one recompute node.
std::vector<Tensor> recompute(const std::string& name, RecomputeFn fn,
                              const std::vector<Tensor>& inputs);
Tensor recompute(const std::string& name, std::function<Tensor(const Tensor&)> fn, const Tensor& x);

}  // namespace fathom::autograd
