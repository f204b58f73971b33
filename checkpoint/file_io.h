#pragma once
// POSIX file helpers of the checkpoint layer (internal): every call checked, every error a
// fathom::Error that starts with the caller's `where` and ends with the system's reason.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::checkpoint::internal {

std::string errno_text(int e);

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  // close() can report a deferred write error (NFS, quota), so it is checked.
  void close(const std::string& where);

 private:
  int fd_;
};

// Creates `path` (which must not exist) for writing.
Fd create_file(const std::string& path, const std::string& where);
void write_all(int fd, const void* data, size_t n, const std::string& where);
void fsync_fd(int fd, const std::string& where);
void fsync_dir(const std::string& dir, const std::string& where);
// Writes `bytes` to `path` so that readers see the old file or the new one, never a part:
// a temporary file in the same directory, fsynced, renamed over `path`, directory fsynced.
void write_file_atomically(const std::string& path, const std::string& bytes,
                           const std::string& where);
// Renames directory `from` to `to` (same parent). An existing `to` is swapped out atomically
// (renameat2 RENAME_EXCHANGE) and then removed, so `to` always names a complete directory.
void replace_dir(const std::string& from, const std::string& to, const std::string& where);

// Opens a regular file for reading; anything else (a FIFO, a device, a directory) is refused
// without blocking. Fills *size.
Fd open_regular(const std::string& path, uint64_t* size, const std::string& where);
// Reads exactly n bytes at `offset`; a short file is an error, never a partial buffer.
void read_at(int fd, void* data, size_t n, uint64_t offset, const std::string& where);
// The whole of a regular file of at most `max_bytes`, checked before anything is allocated.
std::string read_small_file(const std::string& path, uint64_t max_bytes, const std::string& where);

bool exists(const std::string& path);
bool is_dir(const std::string& path);
// mkdir -p.
void make_dirs(const std::string& path, const std::string& where);
// The names in a directory (not "." and ".."); an empty list when it does not exist.
std::vector<std::string> list_dir(const std::string& dir, const std::string& where);
// rm -rf that never throws (symlinks are removed, not followed); false with *why on failure.
bool remove_tree(const std::string& path, std::string* why);

}  // namespace fathom::checkpoint::internal
