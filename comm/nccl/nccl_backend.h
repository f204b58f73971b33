#pragma once
// Internal to comm/: the NCCL backend's two entry points. Defined in nccl_backend.cpp, which
// is compiled only when FATHOM_WITH_CUDA; callers use them inside `#if FATHOM_WITH_CUDA`.
// This header has no CUDA includes, so every build can include it.
#include <memory>

#include "fathom/comm/group_state.h"
#include "fathom/core/device.h"

namespace fathom::comm::internal {

class MpiBackend;

// Creates the group's NCCL communicator on `device`: rank 0 makes the unique id, the group's
// MPI comm thread broadcasts it (keeping the call order), then ncclCommInitRankConfig runs
// non-blocking and is polled, within the group's timeout, until ready. Collective.
std::shared_ptr<Backend> make_nccl_backend(std::shared_ptr<GroupState> state,
                                           std::shared_ptr<MpiBackend> mpi, Device device);

// ncclCommSplit of the parent's communicator. Every rank of the parent calls it; ranks with
// color < 0 pass NCCL_SPLIT_NOCOLOR and get nullptr (child is null for them too).
std::shared_ptr<Backend> split_nccl_backend(Backend& parent, int color, int key,
                                            std::shared_ptr<GroupState> child,
                                            std::shared_ptr<MpiBackend> child_mpi);

}  // namespace fathom::comm::internal
