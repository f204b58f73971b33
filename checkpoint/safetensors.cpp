#include "fathom/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

#include "fathom/checkpoint/file_io.h"
#include "fathom/checkpoint/json.h"
#include "fathom/checkpoint/stream_writer.h"
#include "fathom/core/checked.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::checkpoint {

// Tensor bytes go to and from the file as they lie in memory; the format is little-endian.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

// The Python library's limit: a bigger header is refused before it is read, so a hostile
// length cannot make us allocate more than this (and never more than the file holds).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

const char* st_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::boolean: return "BOOL";
  }
  detail::fail("save_safetensors: dtype ", int(t), " has no safetensors name");
}

bool st_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16}, {"F16", DType::f16},
      {"I32", DType::i32}, {"I64", DType::i64}, {"U8", DType::u8},     {"BOOL", DType::boolean}};
  for (auto& [name, t] : table)
    if (s == name) { *out = t; return true; }
  return false;
}

// Dtypes the format defines that Fathom has no type for: named as such, so a user can tell a
// valid file Fathom cannot hold from a corrupt one.
bool st_known_unsupported(const std::string& s) {
  static const char* names[] = {"I8",      "I16",     "U16",     "U32",     "U64",
                                "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                "F4",      "C64",     "C128"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return s == n; });
}

// ---------------------------------------------------------------------------------- save

using internal::errno_text;
using internal::Fd;
using internal::fsync_dir;
using internal::StreamWriter;

void check_name(const std::string& s, const char* what, const std::string& path) {
  FATHOM_CHECK(json::valid_utf8(s), "save_safetensors: '", path, "': ", what, " ",
               json::quote(s), " is not valid UTF-8");
}

std::string build_header(const std::map<std::string, Tensor>& host,
                         const std::map<std::string, std::string>& metadata) {
  std::string h = "{";
  if (!metadata.empty()) {
    h += json::quote(kMetadataKey) + ":{";
    bool first = true;
    for (auto& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      h += json::quote(k) + ":" + json::quote(v);
    }
    h += '}';
    if (!host.empty()) h += ',';
  }
  uint64_t offset = 0;
  bool first = true;
  for (auto& [name, t] : host) {
    if (!first) h += ',';
    first = false;
    h += json::quote(name) + ":{\"dtype\":\"" + st_name(t.dtype()) + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape().size(); ++d) {
      if (d) h += ',';
      h += std::to_string(t.shape()[d]);
    }
    uint64_t end = offset + t.nbytes();
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  h += '}';
  // Pad like the Python library, so the data section starts 8-byte aligned.
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

// Removes the temporary file unless the save got as far as renaming it.
struct TempFile {
  std::string name;
  bool keep = false;
  ~TempFile() { if (!name.empty() && !keep) ::unlink(name.c_str()); }
};

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "save_safetensors: '" + path + "'";
  FATHOM_CHECK(!path.empty(), "save_safetensors: empty path");
  std::map<std::string, Tensor> host;
  for (auto& [name, t] : tensors) {
    FATHOM_CHECK(!name.empty(), where, ": tensor names must be non-empty");
    FATHOM_CHECK(name != kMetadataKey, where, ": the name \"", kMetadataKey,
                 "\" is reserved for metadata");
    check_name(name, "tensor name", path);
    FATHOM_CHECK(std::none_of(name.begin(), name.end(),
                              [](char c) { return uint8_t(c) < 0x20 || c == 0x7F; }),
                 where, ": tensor name ", json::quote(name), " contains a control character");
    FATHOM_CHECK(t.defined(), where, ": tensor '", name, "' is undefined");
    host.emplace(name, ops::contiguous(ops::to(t, Device::cpu())));
  }
  for (auto& [k, v] : metadata) {
    check_name(k, "metadata key", path);
    check_name(v, "metadata value", path);
  }
  const std::string header = build_header(host, metadata);

  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  FATHOM_CHECK(!base.empty(), where, ": the path names a directory, not a file");

  // A name unique to this process and call (its pid: a file left under it by a dead process of
  // the same pid is stale, removed first), so two savers never share it. The default mode lets
  // the umask decide permissions, as for any new file.
  static std::atomic<uint64_t> counter{0};
  TempFile tmp;
  tmp.name = dir + "/." + base + ".tmp." + std::to_string(::getpid()) + "." +
             std::to_string(counter++);
  ::unlink(tmp.name.c_str());
  const std::string twhere = where + " (writing '" + tmp.name + "')";
  {
    StreamWriter out(tmp.name, twhere);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
    out.append(len, 8);
    out.append(header.data(), header.size());
    for (auto& [name, t] : host) out.append(t.data_ptr(), t.nbytes());
    out.finish();
  }
  FATHOM_CHECK(::rename(tmp.name.c_str(), path.c_str()) == 0, where, ": cannot rename '",
               tmp.name, "' onto it: ", errno_text(errno));
  tmp.keep = true;
  fsync_dir(dir, where);  // without it the rename itself may not survive a crash
}

// ---------------------------------------------------------------------------------- load

namespace {

using internal::read_at;

struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& name, const json::Value& v, const std::string& where) {
  const std::string tw = where + ": tensor " + json::quote(name);
  FATHOM_CHECK(!name.empty(), where, ": a tensor has an empty name");
  FATHOM_CHECK(v.kind == json::Value::Kind::object, tw, ": expected an object, found ",
               v.kind_name());
  Entry e;
  e.name = name;
  const json::Value *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
  for (auto& [k, x] : v.object) {
    if (k == "dtype") dtype = &x;
    else if (k == "shape") shape = &x;
    else if (k == "data_offsets") offsets = &x;
    else detail::fail(tw, ": unexpected key ", json::quote(k));
  }
  FATHOM_CHECK(dtype && shape && offsets, tw, ": missing \"",
               !dtype ? "dtype" : !shape ? "shape" : "data_offsets", "\"");

  FATHOM_CHECK(dtype->kind == json::Value::Kind::string, tw, ": dtype must be a string, found ",
               dtype->kind_name());
  if (!st_dtype(dtype->string, &e.dtype)) {
    FATHOM_CHECK(!st_known_unsupported(dtype->string), tw, ": dtype ", dtype->string,
                 " is not supported by Fathom (it has F32, F64, BF16, F16, I32, I64, U8, BOOL)");
    detail::fail(tw, ": unknown dtype ", json::quote(dtype->string));
  }

  // Negative dims and dims past INT64_MAX cannot get here (the parser refuses them). The count
  // (whose other dims must fit even beside a zero dim) and numel * itemsize are checked to fit
  // in int64 before they are compared with the offsets.
  FATHOM_CHECK(shape->kind == json::Value::Kind::array, tw, ": shape must be an array, found ",
               shape->kind_name());
  for (auto& d : shape->array) {
    FATHOM_CHECK(d.kind == json::Value::Kind::integer, tw, ": shape entries must be integers, found ",
                 d.kind_name());
    e.shape.push_back(int64_t(d.integer));
  }
  const uint64_t bytes = checked_nbytes(e.shape, itemsize(e.dtype), tw.c_str());

  FATHOM_CHECK(offsets->kind == json::Value::Kind::array && offsets->array.size() == 2 &&
                   offsets->array[0].kind == json::Value::Kind::integer &&
                   offsets->array[1].kind == json::Value::Kind::integer,
               tw, ": data_offsets must be an array of two integers [begin, end]");
  e.begin = offsets->array[0].integer;
  e.end = offsets->array[1].integer;
  FATHOM_CHECK(e.end >= e.begin, tw, ": data_offsets end ", e.end, " < begin ", e.begin);
  FATHOM_CHECK(e.end - e.begin == bytes, tw, ": data_offsets [", e.begin, ", ", e.end,
               "] hold ", e.end - e.begin, " bytes but shape ", shape_str(e.shape), " ",
               dtype->string, " needs ", bytes);
  return e;
}

}  // namespace

std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                               std::map<std::string, std::string>* metadata) {
  const std::string where = "load_safetensors: '" + path + "'";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  FATHOM_CHECK(fd.get() >= 0, where, ": cannot open: ", errno_text(errno));
  struct stat st {};
  FATHOM_CHECK(::fstat(fd.get(), &st) == 0, where, ": cannot stat: ", errno_text(errno));
  FATHOM_CHECK(S_ISREG(st.st_mode), where, ": not a regular file");
  const uint64_t file_size = uint64_t(st.st_size);
  FATHOM_CHECK(file_size >= 8, where, ": file is ", file_size,
               " bytes, too short for the 8-byte header length");

  uint8_t len[8];
  read_at(fd.get(), len, 8, 0, where);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  FATHOM_CHECK(n <= file_size - 8, where, ": header length ", n, " is larger than the ",
               file_size - 8, " bytes that follow it");
  FATHOM_CHECK(n <= kMaxHeaderBytes, where, ": header length ", n, " exceeds the limit of ",
               kMaxHeaderBytes, " bytes");
  std::string text(n, '\0');
  read_at(fd.get(), text.data(), n, 8, where);
  const uint64_t data_start = 8 + n, data_size = file_size - data_start;

  json::Value root = json::parse(text, where + ": header");
  FATHOM_CHECK(root.kind == json::Value::Kind::object, where, ": header must be a JSON object, ",
               "found ", root.kind_name());

  std::vector<Entry> entries;
  std::map<std::string, std::string> meta;
  for (auto& [key, v] : root.object) {
    if (key == kMetadataKey) {
      FATHOM_CHECK(v.kind == json::Value::Kind::object, where, ": \"", kMetadataKey,
                   "\" must be an object, found ", v.kind_name());
      for (auto& [mk, mv] : v.object) {
        FATHOM_CHECK(mv.kind == json::Value::Kind::string, where, ": metadata ", json::quote(mk),
                     " must be a string, found ", mv.kind_name());
        meta.emplace(mk, mv.string);
      }
      continue;
    }
    Entry e = parse_entry(key, v, where);
    FATHOM_CHECK(e.end <= data_size, where, ": tensor ", json::quote(key), ": data_offsets [",
                 e.begin, ", ", e.end, "] run past the end of the ", data_size,
                 "-byte data section");
    entries.push_back(std::move(e));
  }

  // Every byte of the data section belongs to exactly one tensor: no overlap (two tensors
  // aliasing the same bytes), no gap or tail (bytes no reader accounts for).
  std::vector<const Entry*> order;
  for (auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    FATHOM_CHECK(e->begin >= pos, where, ": tensor ", json::quote(e->name), " at [", e->begin,
                 ", ", e->end, "] overlaps tensor ", json::quote(prev ? prev->name : ""),
                 " ending at ", pos);
    FATHOM_CHECK(e->begin == pos, where, ": gap of ", e->begin - pos, " bytes in the data ",
                 "section at [", pos, ", ", e->begin, ") before tensor ", json::quote(e->name));
    pos = e->end;
    prev = e;
  }
  FATHOM_CHECK(pos == data_size, where, ": data section is ", data_size,
               " bytes but the tensors cover only ", pos, " (", data_size - pos,
               " trailing bytes)");

  // Only now is anything allocated, and the sizes are bounded by the file's own size.
  std::map<std::string, Tensor> out;
  for (const Entry* e : order) {
    Tensor t = empty(e->shape, e->dtype);
    size_t nbytes = size_t(e->end - e->begin);
    if (nbytes > 0) {
      read_at(fd.get(), t.data_ptr(), nbytes, data_start + e->begin,
              where + ": tensor " + json::quote(e->name));
    }
    if (e->dtype == DType::boolean) {
      // A bool byte other than 0/1 is undefined behaviour in C++ code that reads it.
      const uint8_t* b = static_cast<const uint8_t*>(t.data_ptr());
      for (size_t i = 0; i < nbytes; ++i)
        FATHOM_CHECK(b[i] <= 1, where, ": tensor ", json::quote(e->name), ": BOOL element ", i,
                     " is ", int(b[i]), ", not 0 or 1");
    }
    out.emplace(e->name, std::move(t));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

}  // namespace fathom::checkpoint
