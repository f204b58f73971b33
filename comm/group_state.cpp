#include "fathom/comm/group_state.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "fathom/comm/mpi_agreement.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/core/trace.h"

namespace fathom::comm::internal {

const char* const kReduceNames[] = {"sum", "avg", "max", "min"};
const char* const kOpNames[] = {"allreduce", "broadcast", "allgather", "reduce_scatter", "send",
                                "recv",      "barrier",   "split",     "internal"};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == kNumOpKinds);

bool same_call(const Fingerprint& a, const Fingerprint& b) {
  if (a.seq != b.seq || a.kind != b.kind || a.debug != b.debug) return false;
  switch (OpKind(a.kind)) {
    case OpKind::barrier: return a.extra == b.extra;
    case OpKind::internal: return true;
    // Each rank brings its own color and key; only a split(ranks) list must agree.
    case OpKind::split: return a.extra == b.extra;
    default: break;
  }
  if (a.dtype != b.dtype || a.reduce != b.reduce || a.device != b.device || a.numel != b.numel ||
      a.ndim != b.ndim || a.tag != b.tag)
    return false;
  if (OpKind(a.kind) == OpKind::broadcast && a.peer != b.peer) return false;
  for (int i = 0; i < std::min<int>(a.ndim, 6); ++i)
    if (a.dims[i] != b.dims[i]) return false;
  return true;
}

std::string describe(const Fingerprint& f) {
  // Called for every call issued, so plain appends rather than a stringstream.
  OpKind k = OpKind(f.kind);
  std::string s = f.kind < kNumOpKinds ? kOpNames[f.kind] : "?";
  auto num = [&](int64_t v) { s += std::to_string(v); };
  switch (k) {
    case OpKind::allreduce: case OpKind::reduce_scatter:
      s += "(", s += kReduceNames[f.reduce & 3], s += ")";
      break;
    case OpKind::broadcast: s += "(root ", num(f.peer), s += ")"; break;
    case OpKind::send: s += "(to ", num(f.peer), s += ", tag ", num(f.tag), s += ")"; break;
    case OpKind::recv: s += "(from ", num(f.peer), s += ", tag ", num(f.tag), s += ")"; break;
    default: break;
  }
  if (k == OpKind::barrier && f.extra == kFinalBarrier)
    s += " (comm::finalize's final barrier: this rank is exiting)";
  if (k == OpKind::barrier || k == OpKind::split || k == OpKind::internal) return s;
  s += " [";
  if (f.ndim <= 6) {
    for (int d = 0; d < f.ndim; ++d) s += d ? ", " : "", num(f.dims[d]);
  } else {
    num(f.numel), s += " elements in ", num(f.ndim), s += " dims";
  }
  s += "] ";
  s += dtype_name(DType(f.dtype));
  s += f.device ? " cuda" : " cpu";
  return s;
}

// The fields of a fingerprint that every rank's call must agree on for MPI to run it safely
// and correctly: op, reduce op, dtype, element count, root, device, seq, the debug setting,
// and for split(ranks) the list's hash, for barrier whether it is finalize's. Shapes are not:
// a [4, 4] and a [16] allreduce are the same to MPI (debug mode compares shapes too).
void key_fields(const Fingerprint& f, int64_t* out) {
  OpKind k = OpKind(f.kind);
  bool tensor = k != OpKind::barrier && k != OpKind::split && k != OpKind::internal;
  int64_t v[kKeyFields] = {f.seq,
                           f.kind,
                           f.debug,
                           int64_t(f.extra & ((uint64_t(1) << 62) - 1)),  // negatable
                           tensor ? f.dtype : 0,
                           tensor ? f.numel : 0,
                           tensor ? f.device : 0,
                           k == OpKind::allreduce || k == OpKind::reduce_scatter ? f.reduce : 0,
                           k == OpKind::broadcast ? f.peer : -1,
                           f.tag};
  std::copy(v, v + kKeyFields, out);
}

std::string p2p_mismatch(const Call& c, const Fingerprint& theirs, const GroupState& st) {
  bool ok = OpKind(theirs.kind) == OpKind::send && theirs.dtype == c.fp.dtype &&
            theirs.numel == c.fp.numel && theirs.device == c.fp.device;
  if (ok && c.debug)
    ok = theirs.ndim == c.fp.ndim &&
         std::equal(theirs.dims, theirs.dims + std::min<int>(theirs.ndim, 6), c.fp.dims);
  if (ok) return "";
  bool drained = !theirs.device && OpKind(theirs.kind) == OpKind::send;
  return fathom::detail::concat(
      "DeepComm check failed on ", st.where(), ": send/recv mismatch: ", st.rank_name(c.peer),
      " called ", describe(theirs), " (its p2p seq ", theirs.seq, ") but ", st.rank_name(st.rank),
      " called ", c.desc, " (p2p seq ", c.seq,
      "). A send and its recv must agree in dtype, element count and device",
      c.debug ? " (in debug mode: shape)" : "", ". ",
      drained ? "The message was received into a scratch buffer and dropped; the recv's tensor is "
                "unchanged."
              : "The recv's tensor is unchanged.");
}

// One message for calls that differ: the ranks grouped by what they called, e.g.
// "ranks 0, 2: allreduce(sum) [4, 4] f32 cpu" / "rank 1: allreduce(sum) [4, 5] f32 cpu".
std::string mismatch_message(const std::vector<Fingerprint>& all, int64_t seq,
                             const GroupState& st, bool debug_check) {
  std::ostringstream os;
  os << "DeepComm " << (debug_check ? "debug " : "") << "check failed on " << st.where()
     << ": the ranks called different collectives as collective seq " << seq << ":";
  std::vector<bool> seen(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (seen[i]) continue;
    std::vector<int> ranks;
    for (size_t j = i; j < all.size(); ++j)
      if (!seen[j] && same_call(all[j], all[i])) seen[j] = true, ranks.push_back(int(j));
    os << "\n  " << (ranks.size() > 1 ? "ranks " : "rank ");
    for (size_t k = 0; k < ranks.size(); ++k) os << (k ? ", " : "") << ranks[k];
    os << ": " << describe(all[i]) << " (seq " << all[i].seq << ")";
    if (std::any_of(all.begin(), all.end(), [&](const Fingerprint& f) { return f.debug != all[i].debug; }))
      os << " with FATHOM_COMM_DEBUG " << (all[i].debug ? "on" : "off");
  }
  os << "\nEvery rank must issue the same collectives, with the same op, dtype, element count "
        "and root, in the same order. The call was skipped on every rank (no memory was "
        "written); the group stays usable.";
  return os.str();
}

GroupState::~GroupState() { free_comms(); }

std::string GroupState::where() const {
  return fathom::detail::concat("group '", name, "' (rank ", rank, " of ", size, ")");
}

std::string GroupState::rank_name(int r) const {
  int w = r >= 0 && r < int(world_ranks.size()) ? world_ranks[r] : r;
  if (w == r) return "rank " + std::to_string(r);
  return fathom::detail::concat("rank ", r, " (world rank ", w, ")");
}

void GroupState::issue(Call& c) {
  c.desc = describe(c.fp);  // outside the lock: string formatting is the slow part
  std::lock_guard<std::mutex> lk(mu_);
  c.id = ++next_id_;
  c.seq = c.p2p ? ++p2p_seq_ : ++coll_seq_;
  c.fp.seq = c.seq;
  Record r;
  r.kind = c.kind;
  r.p2p = c.p2p;
  r.peer = c.peer;
  r.seq = c.seq;
  if (c.kind == OpKind::send) r.nth = ++sends_to_[c.peer];
  if (c.kind == OpKind::recv) r.nth = ++recvs_from_[c.peer];
  r.bytes = c.bytes;
  r.dtype = c.in.defined() ? c.in.dtype() : DType::u8;
  r.desc = c.desc;
  pending_.emplace(c.id, std::move(r));
  if (!c.p2p) history_[c.seq % history_.size()] = {c.seq, c.desc};
  OpCounter& n = stats_.ops[size_t(c.kind)];
  n.calls++;
  if (c.kind == OpKind::recv)
    stats_.bytes_received += c.bytes;
  else
    n.bytes += c.bytes;
}

static int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

void GroupState::started(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  it->second.started = true;
  it->second.start = Clock::now();
  it->second.start_us = now_us();
}

static std::string json_escape(const std::string& s) {
  std::string r;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') r += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    r += ch;
  }
  return r;
}

void GroupState::finished(uint64_t id, bool ok) {
  Record r;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    r = std::move(it->second);
    pending_.erase(it);
  }
  if (trace::enabled()) {
    // The timeline (core/trace.h): one row per group, as its calls run one after another.
    int64_t end = now_us();
    trace::record("comm", op_name(r.kind), r.started ? r.start_us : end, end,
                  {{"group", std::string_view(name)}, {"seq", r.seq}, {"bytes", uint64_t(r.bytes)},
                   {"ok", int(ok)}}, "comm " + name);
  }
  if (!tracing()) return;
  // One JSON object per line: easy to merge across ranks and to load with pandas or jq.
  std::ostringstream os;
  os << "{\"op\":\"" << op_name(r.kind) << "\",\"group\":\"" << json_escape(name)
     << "\",\"rank\":" << rank << ",\"world_rank\":" << world_rank() << ",\"seq\":" << r.seq;
  if (r.p2p) os << ",\"peer\":" << r.peer;
  os << ",\"bytes\":" << r.bytes << ",\"dtype\":\"" << dtype_name(r.dtype)
     << "\",\"start_us\":" << (r.started ? r.start_us : now_us()) << ",\"end_us\":" << now_us()
     << ",\"ok\":" << (ok ? "true" : "false") << "}";
  trace_line(os.str());
}

static void copy_desc(char (&dst)[96], const std::string& src) {
  std::snprintf(dst, sizeof dst, "%s", src.c_str());
}

PeerStatus GroupState::status_for(int64_t seq) const {
  PeerStatus s;
  std::lock_guard<std::mutex> lk(mu_);
  s.issued_seq = coll_seq_;
  s.pending = int32_t(pending_.size());
  if (seq <= p2p_question(0)) {
    int asker = int(p2p_question(0) - seq);
    auto count = [&](const std::map<int, int64_t>& m) {
      auto it = m.find(asker);
      return it == m.end() ? int64_t(0) : it->second;
    };
    s.sends_to_asker = count(sends_to_);
    s.recvs_from_asker = count(recvs_from_);
  }
  const History& last = history_[coll_seq_ % history_.size()];
  if (coll_seq_ > 0 && last.seq == coll_seq_) copy_desc(s.issued_desc, last.desc);
  for (const auto& [id, r] : pending_) {
    if (r.p2p) continue;
    s.oldest_seq = r.seq;
    s.oldest_started = r.started;
    if (r.started)
      s.oldest_for_s = std::chrono::duration<double>(Clock::now() - r.start).count();
    copy_desc(s.oldest_desc, r.desc);
    break;
  }
  const History& h = history_[size_t(seq) % history_.size()];
  if (seq > 0 && h.seq == seq) {
    s.known_at_query = 1;
    copy_desc(s.desc_at_query, h.desc);
  }
  return s;
}

std::optional<Overdue> GroupState::overdue(Clock::time_point now) const {
  double limit = timeout_s.load();
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& [id, r] : pending_) {
    if (!r.started) continue;
    double running = std::chrono::duration<double>(now - r.start).count();
    if (running > limit) return Overdue{id, r.seq, r.p2p, r.peer, r.desc, running};
  }
  return std::nullopt;
}

std::vector<Overdue> GroupState::running_for(Clock::time_point now, double min_s) const {
  std::vector<Overdue> out;
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& [id, r] : pending_) {
    if (!r.started) continue;
    double running = std::chrono::duration<double>(now - r.start).count();
    if (running >= min_s) out.push_back({id, r.seq, r.p2p, r.peer, r.desc, running, r.kind, r.nth});
  }
  return out;
}

int64_t GroupState::last_seq() const {
  std::lock_guard<std::mutex> lk(mu_);
  return coll_seq_;
}

CommStats GroupState::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void GroupState::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  stats_ = CommStats{};
}

void GroupState::free_comms() {
  MPI_Comm c = MPI_COMM_NULL, s = MPI_COMM_NULL;
  {
    // Not held across the MPI calls below: the watchdog takes mu_ and must never wait on MPI.
    std::lock_guard<std::mutex> lk(mu_);
    closed = true;
    std::swap(c, comm);
    std::swap(s, side);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // MPI_Finalize already freed them
  MpiLock lock;
  if (s != MPI_COMM_NULL) MPI_Comm_free(&s);
  if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
}

}  // namespace fathom::comm::internal

namespace fathom::comm {

const char* reduce_name(ReduceOp op) { return internal::kReduceNames[int(op) & 3]; }
const char* op_name(OpKind k) {
  return int(k) < kNumOpKinds ? internal::kOpNames[int(k)] : "?";
}

uint64_t CommStats::total_bytes() const {
  uint64_t n = 0;
  for (const auto& o : ops) n += o.bytes;
  return n;
}

}  // namespace fathom::comm
