#include "fathom/comm/side_channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "fathom/comm/mpi_util.h"

namespace fathom::comm::internal {
namespace {

constexpr uint64_t kMagic = 0x4465657043306d6dull;  // "DeepC0mm"
// A notice: Query.key is the sender's world rank, its kind (bits 32-39) and exit code (bits
// 40-47); Query.seq the length of the text that follows (at most kMaxNotice bytes).
constexpr uint64_t kNoticeMagic = 0x4465657046614c6cull;  // "DeepFaLl"
constexpr int64_t kMaxNotice = 16384;
constexpr int kMaxAddrs = 4;

// A rank's reachable addresses: its non-loopback IPv4 interfaces, then loopback (useful only
// on its own host; a wrong host is caught by the rank and job id in every reply).
struct Address {
  uint32_t ip[kMaxAddrs] = {};  // network byte order
  uint16_t port = 0;
  uint8_t count = 0;
};

struct Query {
  uint64_t magic = kMagic, job = 0, key = 0;
  int64_t seq = 0;
};
struct Reply {
  uint64_t magic = kMagic, job = 0;
  int32_t world_rank = -1, found = 0;
  PeerStatus status;
};

struct Channel {
  int listen_fd = -1;
  std::mutex handler_mu;
  NoticeHandler handler;
  uint64_t job = 0;  // rank 0's random id, so a stray connection to another job is rejected
  int rank = 0;
  std::vector<Address> addrs;  // by world rank
};
Channel& ch() {
  static Channel* c = new Channel;  // never destroyed: the watchdog may outlive statics
  return *c;
}

using Clock = std::chrono::steady_clock;
int ms_left(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return int(std::max<int64_t>(0, ms));
}

// Reads or writes exactly n bytes on a non-blocking socket before the deadline.
bool transfer(int fd, void* buf, size_t n, bool write, Clock::time_point deadline) {
  char* p = static_cast<char*>(buf);
  while (n) {
    ssize_t k = write ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, 0);
    if (k > 0) {
      p += k;
      n -= size_t(k);
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
    pollfd pfd{fd, short(write ? POLLOUT : POLLIN), 0};
    if (::poll(&pfd, 1, ms_left(deadline)) <= 0) return false;
  }
  return true;
}

Address local_address(int port) {
  Address a;
  a.port = uint16_t(port);
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i && a.count < kMaxAddrs - 1; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
      uint32_t ip = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
      if (ip == htonl(INADDR_LOOPBACK)) continue;
      a.ip[a.count++] = ip;
    }
    ::freeifaddrs(list);
  }
  a.ip[a.count++] = htonl(INADDR_LOOPBACK);
  return a;
}

int start_connect(uint32_t ip, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = ip;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 || errno == EINPROGRESS)
    return fd;
  ::close(fd);
  return -1;
}

}  // namespace

void open_side_channel(MPI_Comm world) {
  Channel& c = ch();
  MPI_Comm_rank(world, &c.rank);
  int size = 1;
  MPI_Comm_size(world, &size);
  // A rank that cannot listen still takes part in the exchange (with no address): the watchdog
  // then reports its peers as unreachable instead of init failing.
  Address mine;
  c.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = 0;  // any free port
  socklen_t len = sizeof sa;
  if (c.listen_fd >= 0 && ::bind(c.listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::listen(c.listen_fd, 128) == 0 &&
      ::getsockname(c.listen_fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
    mine = local_address(ntohs(sa.sin_port));
  } else {
    std::fprintf(stderr,
                 "[DeepComm rank %d] warning: the watchdog cannot listen on a TCP port (%s); a "
                 "hang will still end the job, but without peers' positions\n",
                 c.rank, std::strerror(errno));
    if (c.listen_fd >= 0) ::close(c.listen_fd);
    c.listen_fd = -1;
  }
  c.addrs.assign(size_t(size), Address{});
  FATHOM_MPI_CHECK(MPI_Allgather(&mine, sizeof(Address), MPI_BYTE, c.addrs.data(), sizeof(Address),
                                 MPI_BYTE, world),
                   "comm::init: side channel address exchange");
  if (c.rank == 0) c.job = std::random_device{}() * 0x9e3779b97f4a7c15ull ^ uint64_t(::getpid());
  FATHOM_MPI_CHECK(MPI_Bcast(&c.job, 1, MPI_UINT64_T, 0, world),
                   "comm::init: side channel job id");
}

void close_side_channel() {
  Channel& c = ch();
  if (c.listen_fd >= 0) ::close(c.listen_fd);
  c.listen_fd = -1;
  c.addrs.clear();
}

void serve_side_channel(const Answer& answer) {
  Channel& c = ch();
  if (c.listen_fd < 0) return;
  for (;;) {
    int fd = ::accept4(c.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: nobody else is asking
    auto deadline = Clock::now() + std::chrono::milliseconds(200);
    Query q;
    bool got = transfer(fd, &q, sizeof q, false, deadline);
    if (got && q.magic == kNoticeMagic && q.job == c.job && q.seq >= 0 && q.seq <= kMaxNotice) {
      std::string text(size_t(q.seq), '\0');
      if (transfer(fd, text.data(), text.size(), false, deadline)) {
        NoticeHandler h;
        {
          std::lock_guard<std::mutex> lk(c.handler_mu);
          h = c.handler;
        }
        Notice n;
        n.from = int(uint32_t(q.key));
        n.kind = ((q.key >> 32) & 0xff) == 1 ? NoticeKind::exiting : NoticeKind::failing;
        n.exit_code = int((q.key >> 40) & 0xff);
        n.text = std::move(text);
        if (h) h(n);  // a failing rank's reason is printed before the sender hears back
        Reply r;
        r.job = c.job;
        r.world_rank = c.rank;
        r.found = 1;
        transfer(fd, &r, sizeof r, true, deadline);
      }
    } else if (got && q.magic == kMagic && q.job == c.job) {
      Reply r;
      r.job = c.job;
      r.world_rank = c.rank;
      if (auto s = answer(q.key, q.seq)) {
        r.found = 1;
        r.status = *s;
      }
      transfer(fd, &r, sizeof r, true, deadline);
    }
    ::close(fd);
  }
}

void set_notice_handler(NoticeHandler handler) {
  Channel& c = ch();
  std::lock_guard<std::mutex> lk(c.handler_mu);
  c.handler = std::move(handler);
}

bool side_channel_open() { return !ch().addrs.empty(); }

std::vector<int> notify_peers(Notice notice, double wait_s, bool confirm) {
  Channel& c = ch();
  std::string text = notice.text.substr(0, size_t(kMaxNotice));
  struct Conn {
    int peer = -1, fd = -1, addr = 0;
    bool sent = false, done = false;
    size_t got = 0;
    Reply reply;
  };
  std::vector<Conn> conns;
  for (int r = 0; r < int(c.addrs.size()); ++r)
    if (r != c.rank) conns.emplace_back().peer = r;
  auto next_address = [&](Conn& k) {  // tries the peer's addresses in order
    if (k.fd >= 0) ::close(k.fd);
    k.fd = -1;
    const Address& a = c.addrs[size_t(k.peer)];
    while (k.fd < 0 && k.addr < a.count) k.fd = start_connect(a.ip[k.addr++], a.port);
    k.sent = false;
    k.got = 0;
  };
  for (auto& k : conns) next_address(k);
  Query q;
  q.magic = kNoticeMagic;
  q.job = c.job;
  q.key = uint64_t(uint32_t(c.rank)) | uint64_t(notice.kind == NoticeKind::exiting) << 32 |
          uint64_t(uint8_t(notice.exit_code)) << 40;
  q.seq = int64_t(text.size());
  std::string packet(reinterpret_cast<const char*>(&q), sizeof q);
  packet += text;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(wait_s));
  while (Clock::now() < deadline) {
    std::vector<pollfd> pfds;
    std::vector<Conn*> who;
    for (auto& k : conns) {
      if (k.fd < 0 || k.done) continue;
      pfds.push_back({k.fd, short(k.sent ? POLLIN : POLLOUT), 0});
      who.push_back(&k);
    }
    if (pfds.empty()) break;
    ::poll(pfds.data(), pfds.size(), std::min(5, ms_left(deadline)));
    for (size_t j = 0; j < pfds.size(); ++j) {
      Conn& k = *who[j];
      if (!pfds[j].revents) continue;
      if (!k.sent) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(k.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || !transfer(k.fd, packet.data(), packet.size(), true, deadline)) next_address(k);
        else k.sent = true, k.done = !confirm;  // queued on the socket: the peer reads it
        continue;
      }
      ssize_t r = ::recv(k.fd, reinterpret_cast<char*>(&k.reply) + k.got, sizeof(Reply) - k.got, 0);
      if (r > 0) k.got += size_t(r);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        next_address(k);
        continue;
      }
      if (k.got < sizeof(Reply)) continue;
      if (k.reply.magic == kMagic && k.reply.job == c.job && k.reply.world_rank == k.peer)
        k.done = true;
      else
        next_address(k);
    }
  }
  std::vector<int> told;
  for (auto& k : conns) {
    if (k.fd >= 0) ::close(k.fd);
    if (k.done) told.push_back(k.peer);
  }
  return told;
}

std::vector<std::optional<PeerAnswer>> ask_peers(const std::vector<int>& peers, uint64_t key,
                                                 int64_t seq, double wait_s,
                                                 const Answer& answer) {
  Channel& c = ch();
  struct Conn {
    int fd = -1, addr = 0;
    bool sent = false;
    size_t got = 0;
    Reply reply;
  };
  size_t n = peers.size();
  std::vector<Conn> conns(n);
  std::vector<std::optional<PeerAnswer>> out(n);
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(wait_s));
  auto next_address = [&](size_t i) {  // tries this peer's addresses in order
    Conn& k = conns[i];
    if (k.fd >= 0) ::close(k.fd);
    k.fd = -1;
    const Address& a = c.addrs[size_t(peers[i])];
    while (k.fd < 0 && k.addr < a.count) k.fd = start_connect(a.ip[k.addr++], a.port);
    k.sent = false;
    k.got = 0;
  };
  for (size_t i = 0; i < n; ++i)
    if (peers[i] >= 0 && size_t(peers[i]) < c.addrs.size()) next_address(i);

  Query q;
  q.job = c.job;
  q.key = key;
  q.seq = seq;
  while (Clock::now() < deadline) {
    std::vector<pollfd> pfds;
    std::vector<size_t> who;
    for (size_t i = 0; i < n; ++i) {
      if (conns[i].fd < 0 || out[i]) continue;
      pfds.push_back({conns[i].fd, short(conns[i].sent ? POLLIN : POLLOUT), 0});
      who.push_back(i);
    }
    if (pfds.empty()) break;
    ::poll(pfds.data(), pfds.size(), std::min(5, ms_left(deadline)));
    for (size_t j = 0; j < pfds.size(); ++j) {
      size_t i = who[j];
      Conn& k = conns[i];
      if (!pfds[j].revents) continue;
      if (!k.sent) {  // connected (or refused): send the question
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(k.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || !transfer(k.fd, &q, sizeof q, true, deadline)) {
          next_address(i);
          continue;
        }
        k.sent = true;
        continue;
      }
      ssize_t r = ::recv(k.fd, reinterpret_cast<char*>(&k.reply) + k.got, sizeof(Reply) - k.got, 0);
      if (r > 0) k.got += size_t(r);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        next_address(i);  // closed early: a stranger on this address, try the next one
        continue;
      }
      if (k.got < sizeof(Reply)) continue;
      if (k.reply.magic == kMagic && k.reply.job == c.job && k.reply.world_rank == peers[i])
        out[i] = PeerAnswer{k.reply.found != 0, k.reply.status};
      else
        next_address(i);
    }
    serve_side_channel(answer);
  }
  for (auto& k : conns)
    if (k.fd >= 0) ::close(k.fd);
  return out;
}

}  // namespace fathom::comm::internal
