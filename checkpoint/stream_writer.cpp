#include "fathom/checkpoint/stream_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "fathom/core/error.h"

namespace fathom::checkpoint::internal {

namespace {

bool direct_io_wanted() {
  const char* v = std::getenv("FATHOM_CHECKPOINT_DIRECT_IO");
  if (!v || !*v) return true;
  const std::string s = v;
  FATHOM_CHECK(s == "0" || s == "1", "FATHOM_CHECKPOINT_DIRECT_IO='", s,
               "' must be 1 (write checkpoints with O_DIRECT where the filesystem allows it, the "
               "default) or 0 (through the page cache)");
  return s == "1";
}

// Buffers are kept from save to save: a fresh page costs a fault (~2 us per 4 KB on the VMs
// measured), 4 ms for each new buffer. At most two per writer alive at once. Never destroyed
// (a save's thread may still return its buffers while the process exits), so the buffers
// stay reachable to the end rather than leak.
struct Pool {
  std::mutex mu;
  std::vector<char*> free;
};
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

char* take_buffer() {
  {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mu);
    if (!pl.free.empty()) {
      char* p = pl.free.back();
      pl.free.pop_back();
      return p;
    }
  }
  void* p = std::aligned_alloc(StreamWriter::kBlock, StreamWriter::kBuffer);
  FATHOM_CHECK(p, "checkpoint: cannot allocate a ", StreamWriter::kBuffer >> 20,
               " MB write buffer");
  return static_cast<char*>(p);
}

void give_back(char* p) {
  if (!p) return;
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mu);
  pl.free.push_back(p);
}

}  // namespace

StreamWriter::StreamWriter(const std::string& path, std::string where)
    : path_(path), where_(std::move(where)) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  int f = -1;
  if (direct_io_wanted()) {
    f = ::open(path.c_str(), flags | O_DIRECT, 0666);
    direct_ = f >= 0;
    // EINVAL: the filesystem has no O_DIRECT. The file may have been created before the open
    // failed; O_EXCL says it is ours.
    if (f < 0 && errno == EINVAL) ::unlink(path.c_str());
    else FATHOM_CHECK(f >= 0, where_, ": cannot create '", path, "': ", errno_text(errno));
  }
  if (f < 0) {
    f = ::open(path.c_str(), flags, 0666);
    FATHOM_CHECK(f >= 0, where_, ": cannot create '", path, "': ", errno_text(errno));
  }
  fd_ = Fd(f);
  buf_[0] = take_buffer();
  buf_[1] = take_buffer();
}

StreamWriter::~StreamWriter() {
  try {
    wait_in_flight();
  } catch (const std::exception&) {
    // Already failing (finish() was not reached): the first error is the one reported.
  }
  give_back(buf_[0]);
  give_back(buf_[1]);
}

void StreamWriter::append(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    size_t k = std::min(n, kBuffer - used_);
    std::memcpy(buf_[cur_] + used_, p, k);
    used_ += k;
    size_ += k;
    p += k;
    n -= k;
    if (used_ == kBuffer) flush(false);
  }
}

void StreamWriter::append_zeros(size_t n) {
  while (n > 0) {
    size_t k = std::min(n, kBuffer - used_);
    std::memset(buf_[cur_] + used_, 0, k);
    used_ += k;
    size_ += k;
    n -= k;
    if (used_ == kBuffer) flush(false);
  }
}

void StreamWriter::wait_in_flight() {
  if (in_flight_.valid()) in_flight_.get();  // rethrows the worker's error
}

void StreamWriter::flush(bool last) {
  wait_in_flight();  // its buffer is the one filled next
  size_t n = used_;
  char* p = buf_[cur_];
  if (last) {
    const size_t padded = (n + kBlock - 1) / kBlock * kBlock;
    std::memset(p + n, 0, padded - n);
    n = padded;
  }
  const uint64_t offset = written_;
  written_ += n;
  in_flight_ = std::async(std::launch::async, [this, p, n, offset] {
    const char* q = p;
    size_t left = n;
    uint64_t at = offset;
    while (left > 0) {
      ssize_t w = ::pwrite(fd_.get(), q, left, off_t(at));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EINVAL && direct_) {
        // The filesystem took the O_DIRECT open but refuses this write (an alignment it needs
        // beyond kBlock): the rest goes through the page cache.
        int fl = ::fcntl(fd_.get(), F_GETFL);
        FATHOM_CHECK(fl >= 0 && ::fcntl(fd_.get(), F_SETFL, fl & ~O_DIRECT) == 0, where_,
                     ": cannot turn O_DIRECT off for '", path_, "': ", errno_text(errno));
        direct_ = false;
        continue;
      }
      FATHOM_CHECK(w > 0, where_, ": write of '", path_, "' failed: ",
                   errno_text(w < 0 ? errno : EIO));
      q += w;
      left -= size_t(w);
      at += uint64_t(w);
    }
  });
  cur_ ^= 1;
  used_ = 0;
}

void StreamWriter::finish() {
  if (used_ > 0) flush(true);
  wait_in_flight();
  FATHOM_CHECK(::ftruncate(fd_.get(), off_t(size_)) == 0, where_, ": cannot set the size of '",
               path_, "' to ", size_, " bytes: ", errno_text(errno));
  fsync_fd(fd_.get(), where_);
  fd_.close(where_);
}

}  // namespace fathom::checkpoint::internal
