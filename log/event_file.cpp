#include "fathom/log/event_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "event.pb.h"
#include "fathom/core/error.h"
#include "fathom/log/crc32c.h"

namespace fathom::logging {

namespace {

double wall_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xff);
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s += char((v >> (8 * i)) & 0xff);
}
uint64_t get_le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | uint64_t(static_cast<unsigned char>(p[i]));
  return v;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

}  // namespace

std::string tfrecord(const std::string& data) {
  std::string rec, len;
  put_u64(len, uint64_t(data.size()));
  rec.reserve(data.size() + 16);
  rec += len;
  put_u32(rec, mask_crc32c(crc32c(len)));
  rec += data;
  put_u32(rec, mask_crc32c(crc32c(data)));
  return rec;
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  FATHOM_CHECK(!ec, "EventWriter: cannot create the directory '", dir, "': ", ec.message());
  // TensorBoard loads the files of a directory whose names contain "tfevents"; the time, host
  // and process id keep two runs (or a restarted one) from writing into one file.
  long secs = long(wall_seconds());
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(secs) + "." +
                                         host_name() + "." + std::to_string(::getpid()))).string();
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FATHOM_CHECK(fd_ >= 0, "EventWriter: cannot create '", path_, "': ", std::strerror(errno));
  tb::Event e;
  e.set_wall_time(wall_seconds());
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::add_scalars(int64_t step, const std::vector<Scalar>& values) {
  tb::Event e;
  e.set_wall_time(wall_seconds());
  e.set_step(step);
  for (const Scalar& s : values) {
    tb::Summary::Value* v = e.mutable_summary()->add_value();
    v->set_tag(s.tag);
    v->set_simple_value(float(s.value));
  }
  write_record(e.SerializeAsString());
}

void EventWriter::write_record(const std::string& data) {
  std::string rec = tfrecord(data);
  size_t done = 0;
  while (done < rec.size()) {
    ssize_t n = ::write(fd_, rec.data() + done, rec.size() - done);
    if (n < 0 && errno == EINTR) continue;
    FATHOM_CHECK(n > 0, "EventWriter: writing '", path_, "' failed: ", std::strerror(errno));
    done += size_t(n);
  }
}

EventFile read_event_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FATHOM_CHECK(in, "read_event_file: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string buf = ss.str();
  EventFile out;
  size_t at = 0;
  while (at < buf.size()) {
    auto where = [&] { return detail::concat("read_event_file: '", path, "' record ", out.records, " at byte ", at); };
    if (buf.size() - at < 12) {
      out.truncated_tail = true;
      break;
    }
    uint64_t len = get_le(buf.data() + at, 8);
    uint32_t len_crc = uint32_t(get_le(buf.data() + at + 8, 4));
    FATHOM_CHECK(len_crc == mask_crc32c(crc32c(buf.data() + at, 8)), where(),
                 ": the length's CRC does not match (not an event file, or corrupt)");
    // Events are small; a length past 1 GiB is damage, not a record (and would overflow the
    // parser's int size).
    FATHOM_CHECK(len < (uint64_t(1) << 30), where(), ": a record of ", len, " bytes");
    if (len > buf.size() - at - 12 || buf.size() - at - 12 - len < 4) {
      out.truncated_tail = true;
      break;
    }
    const char* data = buf.data() + at + 12;
    uint32_t data_crc = uint32_t(get_le(data + len, 4));
    FATHOM_CHECK(data_crc == mask_crc32c(crc32c(data, size_t(len))), where(),
                 ": the data's CRC does not match (corrupt record)");
    tb::Event e;
    FATHOM_CHECK(e.ParseFromArray(data, int(len)), where(), ": the record is not an Event");
    if (e.has_file_version()) out.file_version = e.file_version();
    if (e.has_summary())
      for (const tb::Summary::Value& v : e.summary().value())
        if (v.has_simple_value()) out.scalars.push_back({e.step(), e.wall_time(), v.tag(), v.simple_value()});
    ++out.records;
    at += 12 + size_t(len) + 4;
  }
  return out;
}

}  // namespace fathom::logging
