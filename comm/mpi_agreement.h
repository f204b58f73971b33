#pragma once
// Internal to comm/: the agreement check's fast transport. Before every collective's payload the
// ranks of a group compare their calls' key fields (group_state.h: key_fields). When every
// member of the group runs on one node, they do it through a small shared-memory segment
// instead of an MPI_Allreduce: each rank writes its fields into its own slot and reads every
// other rank's. That keeps the guarantee (every rank sees every rank's fields before any
// payload moves, and all see the same ones, so they all decide alike) at the cost of a few
// cache-line transfers instead of an MPI collective's latency and software stack (docs/comm.md
// has the numbers). Groups that span nodes use the MPI_Allreduce (mpi_backend.cpp).
//
// Slots are matched by position, the k-th check of the group on every rank, not by seq (seq
// is one of the compared fields, so ranks that issued different numbers of calls still meet
// and get the "different collectives" error). Two slots per rank, used alternately, suffice: a
// rank writes its slot for check k + 2 only after check k + 1 saw every rank's k + 1, that is
// after every rank has finished reading its slots for check k.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "fathom/comm/group_state.h"

namespace fathom::comm::internal {

class ShmAgreement {
 public:
  // Collective over `comm` (every member calls it when the group is made): maps one segment for
  // the group when every member is on this node and FATHOM_COMM_SHM_CHECK is not 0; nullptr
  // on every rank alike otherwise (one rank that cannot map it makes them all use MPI). Plain
  // MPI calls: the caller holds the MPI lock where one is needed.
  static std::unique_ptr<ShmAgreement> open(MPI_Comm comm, int rank, int size);
  ~ShmAgreement();
  ShmAgreement(const ShmAgreement&) = delete;
  ShmAgreement& operator=(const ShmAgreement&) = delete;

  // Publishes this rank's kKeyFields fields for the group's next check, waits until every
  // member has published its own, and says whether all are equal. While it waits (past a
  // short spin) it calls `idle` now and then, so that this thread keeps progressing MPI
  // requests a peer may be waiting on; a peer that never arrives is the watchdog's business.
  bool agree(const int64_t* fields, const std::function<void()>& idle);

 private:
  struct Slot;
  ShmAgreement(void* base, size_t bytes, int rank, int size);
  Slot& slot(int rank, int64_t check) const;
  void* base_;
  size_t bytes_;
  int rank_, size_;
  int64_t checks_ = 0;  // checks done: this one's slot position
};

}  // namespace fathom::comm::internal
