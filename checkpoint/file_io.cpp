#include "fathom/checkpoint/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "fathom/core/error.h"

namespace fathom::checkpoint::internal {

std::string errno_text(int e) { return std::strerror(e); }

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

void Fd::close(const std::string& where) {
  int f = release();
  FATHOM_CHECK(f < 0 || ::close(f) == 0, where, ": close failed: ", errno_text(errno));
}

Fd create_file(const std::string& path, const std::string& where) {
  int f = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  FATHOM_CHECK(f >= 0, where, ": cannot create '", path, "': ", errno_text(errno));
  return Fd(f);
}

void write_all(int fd, const void* data, size_t n, const std::string& where) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    FATHOM_CHECK(w > 0, where, ": write failed: ", errno_text(w < 0 ? errno : EIO));
    p += w;
    n -= size_t(w);
  }
}

void fsync_fd(int fd, const std::string& where) {
  FATHOM_CHECK(::fsync(fd) == 0, where, ": fsync failed: ", errno_text(errno));
}

void fsync_dir(const std::string& dir, const std::string& where) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  FATHOM_CHECK(d.get() >= 0, where, ": cannot open directory '", dir, "' to fsync it: ",
               errno_text(errno));
  FATHOM_CHECK(::fsync(d.get()) == 0, where, ": fsync of directory '", dir, "' failed: ",
               errno_text(errno));
}

static std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

void write_file_atomically(const std::string& path, const std::string& bytes,
                           const std::string& where) {
  static std::atomic<uint64_t> counter{0};
  const std::string dir = parent_of(path);
  const std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  const std::string tmp = dir + "/.tmp." + base + "." + std::to_string(::getpid()) + "." +
                          std::to_string(counter++);
  ::unlink(tmp.c_str());
  try {
    Fd fd = create_file(tmp, where);
    write_all(fd.get(), bytes.data(), bytes.size(), where + " (writing '" + tmp + "')");
    fsync_fd(fd.get(), where + " (writing '" + tmp + "')");
    fd.close(where + " (writing '" + tmp + "')");
    FATHOM_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, where, ": cannot rename '", tmp,
                 "' to '", path, "': ", errno_text(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(dir, where);
}

void replace_dir(const std::string& from, const std::string& to, const std::string& where) {
  if (::rename(from.c_str(), to.c_str()) == 0) return;
  int e = errno;
  FATHOM_CHECK(e == EEXIST || e == ENOTEMPTY, where, ": cannot rename '", from, "' to '", to,
               "': ", errno_text(e));
  // `to` exists (the same step saved again, e.g. after a resume from it): swap the two names
  // in one step, then remove the old one, now under the temporary name.
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    std::string why;
    if (!remove_tree(from, &why))
      std::fprintf(stderr, "%s: warning: cannot remove the replaced '%s': %s\n", where.c_str(),
                   from.c_str(), why.c_str());
    return;
  }
  e = errno;
  FATHOM_CHECK(e == EINVAL || e == ENOSYS, where, ": cannot exchange '", from, "' and '", to,
               "': ", errno_text(e));
  // A filesystem without RENAME_EXCHANGE: move the old one aside first. A crash in between
  // leaves it under a .tmp. name (cleaned later) and the older steps loadable.
  const std::string aside = parent_of(to) + "/.tmp.replaced." + std::to_string(::getpid());
  std::string why;
  remove_tree(aside, &why);
  FATHOM_CHECK(::rename(to.c_str(), aside.c_str()) == 0, where, ": cannot move '", to,
               "' aside: ", errno_text(errno));
  FATHOM_CHECK(::rename(from.c_str(), to.c_str()) == 0, where, ": cannot rename '", from,
               "' to '", to, "': ", errno_text(errno));
  if (!remove_tree(aside, &why))
    std::fprintf(stderr, "%s: warning: cannot remove '%s': %s\n", where.c_str(), aside.c_str(),
                 why.c_str());
}

Fd open_regular(const std::string& path, uint64_t* size, const std::string& where) {
  // O_NONBLOCK: opening a FIFO planted in a checkpoint must not wait for a writer.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  FATHOM_CHECK(fd.get() >= 0, where, ": cannot open: ", errno_text(errno));
  struct stat st {};
  FATHOM_CHECK(::fstat(fd.get(), &st) == 0, where, ": cannot stat: ", errno_text(errno));
  FATHOM_CHECK(S_ISREG(st.st_mode), where, ": not a regular file");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  *size = uint64_t(st.st_size);
  return fd;
}

void read_at(int fd, void* data, size_t n, uint64_t offset, const std::string& where) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, std::min<size_t>(n, size_t(1) << 30), off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    FATHOM_CHECK(r >= 0, where, ": read failed: ", errno_text(errno));
    FATHOM_CHECK(r > 0, where, ": the file ended early (was it truncated while being read?)");
    p += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
}

std::string read_small_file(const std::string& path, uint64_t max_bytes, const std::string& where) {
  uint64_t size = 0;
  Fd fd = open_regular(path, &size, where);
  FATHOM_CHECK(size <= max_bytes, where, ": ", size, " bytes, more than the limit of ", max_bytes);
  std::string out(size_t(size), '\0');
  read_at(fd.get(), out.data(), out.size(), 0, where);
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path, const std::string& where) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  FATHOM_CHECK(!ec, where, ": cannot create directory '", path, "': ", ec.message());
  FATHOM_CHECK(is_dir(path), where, ": '", path, "' exists but is not a directory");
}

std::vector<std::string> list_dir(const std::string& dir, const std::string& where) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    FATHOM_CHECK(errno == ENOENT, where, ": cannot list '", dir, "': ", errno_text(errno));
    return names;
  }
  errno = 0;
  while (dirent* ent = ::readdir(d)) {
    std::string n = ent->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  int e = errno;
  ::closedir(d);
  FATHOM_CHECK(e == 0, where, ": cannot list '", dir, "': ", errno_text(e));
  std::sort(names.begin(), names.end());
  return names;
}

bool remove_tree(const std::string& path, std::string* why) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec && why) *why = ec.message();
  return !ec;
}

}  // namespace fathom::checkpoint::internal
