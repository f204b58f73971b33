#pragma once
// A file written front to back, bypassing the page cache (internal, the checkpoint layer).
//
// A checkpoint is written once and read, if ever, after a failure: caching its pages only
// evicts the training job's own memory, and on the machines measured (docs/checkpoint.md) the
// buffered path was also the slow one. A buffered write of 512 MB + fsync took 0.32-1.5 s, the
// same bytes with O_DIRECT 0.22-0.29 s: the kernel's page-cache allocation and writeback, not
// the disk, set the buffered time.
//
// O_DIRECT wants aligned memory, lengths and offsets, which tensors in a file laid out at
// kAlign do not have. So the caller's bytes are copied into two aligned buffers: the caller
// fills one while a worker thread writes the other. The copy runs at memory speed, several
// times the disk's, and is hidden behind the write. A filesystem without O_DIRECT (tmpfs, some
// network filesystems) gets ordinary writes of the same buffers; so does
// FATHOM_CHECKPOINT_DIRECT_IO=0.
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>

#include "fathom/checkpoint/file_io.h"

namespace fathom::checkpoint::internal {

class StreamWriter {
 public:
  // Creates `path` (which must not exist). Errors start with `where`.
  StreamWriter(const std::string& path, std::string where);
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;
  // Waits for a write still in flight; the file is left as it is (the caller's temporary
  // directory is never read unless finish() returned).
  ~StreamWriter();

  void append(const void* data, size_t n);
  void append_zeros(size_t n);
  // Writes what is buffered, cuts the file to the bytes appended (the last block is padded for
  // O_DIRECT), fsyncs and closes it.
  void finish();

  uint64_t size() const { return size_; }
  // Whether the data went around the page cache (false: O_DIRECT not available or disabled).
  bool direct() const { return direct_; }

  // O_DIRECT's alignment for memory, offsets and lengths: 4096 covers every block size Linux
  // filesystems use on x86.
  static constexpr size_t kBlock = 4096;
  static constexpr size_t kBuffer = size_t(8) << 20;

 private:
  void flush(bool last);  // hands buffer `cur_` to the worker
  void wait_in_flight();

  std::string path_, where_;
  Fd fd_;
  bool direct_ = false;
  char* buf_[2] = {nullptr, nullptr};
  int cur_ = 0;
  size_t used_ = 0;        // bytes in buf_[cur_]
  uint64_t size_ = 0;      // bytes appended
  uint64_t written_ = 0;   // file offset of the next buffer handed to the worker
  std::future<void> in_flight_;
};

}  // namespace fathom::checkpoint::internal
