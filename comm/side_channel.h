#pragma once
// Internal to comm/: the watchdog's side channel, a small TCP service on every rank.
//
// Why TCP and not a duplicate MPI communicator: the watchdog must answer peers at any time,
// so a communicator-based design probes MPI every few tens of milliseconds from the watchdog
// thread, concurrently with the comm threads' collectives. With Open MPI that concurrent
// progress made healthy 1 MB allreduces stall for whole scheduler time slices (20 ms instead
// of 0.3 ms) on a busy machine. A listening socket costs nothing until a question arrives:
// the watchdog polls it with poll(2), never touching MPI, and it keeps working when MPI is
// wedged or a rank only provides MPI_THREAD_SERIALIZED.
//
// Protocol: the asking rank connects to a peer, sends (job id, group key, seq), and reads back
// that rank's PeerStatus for the group. A notice (another magic) carries a failing rank's
// message, or says a rank is exiting, instead; the peer handles it and replies to confirm. Addresses (IPv4 interfaces and a port per rank) are
// exchanged once with MPI_Allgather at init. Every wait is bounded; a peer that cannot be
// reached is reported as such.
#include <mpi.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fathom/comm/group_state.h"

namespace fathom::comm::internal {

// Looks up the group with `key` and describes this rank's state at collective `seq`;
// returns nullopt when this rank has no such group (any more).
using Answer = std::function<std::optional<PeerStatus>(uint64_t key, int64_t seq)>;

// Opens the listening socket and exchanges addresses over `world` (collective).
void open_side_channel(MPI_Comm world);
void close_side_channel();
// Answers every question waiting now. Never blocks for long: each answer has a 200 ms limit.
void serve_side_channel(const Answer& answer);
// Asks world ranks `peers` about group `key` at `seq`; waits at most `wait_s` seconds while
// still answering questions to this rank (peers that time out too ask at the same moment).
// One entry per peer: nullopt when it did not answer; `found` false when it has no such group.
struct PeerAnswer {
  bool found = false;
  PeerStatus status;
};
// A notice from another rank, handled on the receiving rank's watchdog thread inside
// serve_side_channel, before the sender is told it arrived:
//  - failing: comm::abort's reason; the receiver prints it and ends with `exit_code` too;
//  - exiting: the sender entered comm::finalize (it returned from main or called exit), so it
//    will issue no more calls; text is empty.
enum class NoticeKind : uint8_t { failing, exiting };
struct Notice {
  NoticeKind kind = NoticeKind::failing;
  int from = -1;  // world rank
  int exit_code = 1;
  std::string text;
};
// Set once by the watchdog.
using NoticeHandler = std::function<void(const Notice& notice)>;
void set_notice_handler(NoticeHandler handler);
// Sends `notice` (its `from` is filled in) to every other world rank. With `confirm`, waits
// until each has handled it, at most `wait_s` seconds in all, and returns the ranks that
// confirmed; without, only until each has it (sent), bounded the same way. Any thread.
std::vector<int> notify_peers(Notice notice, double wait_s, bool confirm = true);
// False before init opened the channel (or after it closed).
bool side_channel_open();
std::vector<std::optional<PeerAnswer>> ask_peers(const std::vector<int>& peers, uint64_t key,
                                                 int64_t seq, double wait_s,
                                                 const Answer& answer);

}  // namespace fathom::comm::internal
