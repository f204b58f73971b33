#include "fathom/checkpoint/format.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "fathom/checkpoint/json.h"
#include "fathom/core/checked.h"
#include "fathom/core/error.h"

namespace fathom::checkpoint::internal {

// Tensor bytes and frame fields are little-endian on disk, written as they lie in memory.
static_assert(std::endian::native == std::endian::little,
              "the checkpoint format assumes a little-endian host");

// ------------------------------------------------------------------------------- XXH3-64

uint64_t xxh3(const void* data, size_t n) { return XXH3_64bits(data, n); }

Xxh3::Xxh3() : state_(XXH3_createState()) {
  FATHOM_CHECK(state_, "checkpoint: out of memory for an XXH3 state");
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}
Xxh3::~Xxh3() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void Xxh3::update(const void* data, size_t n) {
  if (n) XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, n);
}
uint64_t Xxh3::digest() const { return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_)); }

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// --------------------------------------------------------------------------------- names

std::string step_dir_name(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

bool parse_step_dir_name(std::string_view name, int64_t* step) {
  constexpr std::string_view prefix = "step_";
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return false;
  std::string_view digits = name.substr(prefix.size());
  if (digits.size() > 19) return false;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');  // 19 digits cannot wrap uint64
  }
  if (v > uint64_t(INT64_MAX)) return false;
  if (step_dir_name(int64_t(v)) != name) return false;  // only the canonical spelling
  *step = int64_t(v);
  return true;
}

std::string rank_file_name(int rank) { return "rank_" + std::to_string(rank) + ".bin"; }
std::string done_file_name(int rank) { return "rank_" + std::to_string(rank) + ".done"; }
std::string failed_file_name(int rank) { return "rank_" + std::to_string(rank) + ".failed"; }

// --------------------------------------------------------------------------------- frame

namespace {

constexpr size_t kFrameHeader = 32;

const char* magic_of(FrameKind k) { return k == FrameKind::manifest ? "FTHMCKPT" : "FTHMDONE"; }
const char* frame_what(FrameKind k) {
  return k == FrameKind::manifest ? "a Fathom checkpoint manifest" : "a Fathom rank-done record";
}

void put_u32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const char* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const char* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

uint64_t frame_checksum(const char* header24, std::string_view payload) {
  Xxh3 h;
  h.update(header24, 24);
  h.update(payload.data(), payload.size());
  return h.digest();
}

}  // namespace

std::string frame(FrameKind kind, const std::string& payload) {
  std::string out(kFrameHeader, '\0');
  std::memcpy(out.data(), magic_of(kind), 8);
  put_u32(out.data() + 8, kFormatVersion);
  put_u32(out.data() + 12, 0);
  put_u64(out.data() + 16, payload.size());
  put_u64(out.data() + 24, frame_checksum(out.data(), payload));
  out += payload;
  return out;
}

std::string_view unframe(FrameKind kind, std::string_view bytes, const std::string& where) {
  FATHOM_CHECK(bytes.size() >= kFrameHeader, where, ": ", bytes.size(),
               " bytes, too short for the 32-byte header of ", frame_what(kind));
  FATHOM_CHECK(std::memcmp(bytes.data(), magic_of(kind), 8) == 0, where, ": not ",
               frame_what(kind), " (the first 8 bytes are not \"", magic_of(kind), "\")");
  const uint64_t length = get_u64(bytes.data() + 16);
  FATHOM_CHECK(length == bytes.size() - kFrameHeader, where, ": the header says ", length,
               " payload bytes but ", bytes.size() - kFrameHeader,
               " follow it (truncated or padded file)");
  std::string_view payload = bytes.substr(kFrameHeader);
  const uint64_t stored = get_u64(bytes.data() + 24);
  const uint64_t actual = frame_checksum(bytes.data(), payload);
  FATHOM_CHECK(stored == actual, where, ": checksum mismatch (stored ", hex64(stored),
               ", computed ", hex64(actual), "): the file is corrupt");
  const uint32_t version = get_u32(bytes.data() + 8);
  FATHOM_CHECK(version == kFormatVersion, where, ": format version ", version,
               ", but this build of Fathom reads version ", kFormatVersion);
  FATHOM_CHECK(get_u32(bytes.data() + 12) == 0, where, ": reserved header field is ",
               get_u32(bytes.data() + 12), ", expected 0");
  return payload;
}

// -------------------------------------------------------------------------------- dtypes

pb::DType to_pb(DType t) {
  switch (t) {
    case DType::f32: return pb::F32;
    case DType::f64: return pb::F64;
    case DType::bf16: return pb::BF16;
    case DType::f16: return pb::F16;
    case DType::i32: return pb::I32;
    case DType::i64: return pb::I64;
    case DType::u8: return pb::U8;
    case DType::boolean: return pb::BOOL;
  }
  detail::fail("checkpoint: dtype ", int(t), " has no checkpoint code");
}

bool from_pb(int v, DType* out) {
  switch (v) {
    case pb::F32: *out = DType::f32; return true;
    case pb::F64: *out = DType::f64; return true;
    case pb::BF16: *out = DType::bf16; return true;
    case pb::F16: *out = DType::f16; return true;
    case pb::I32: *out = DType::i32; return true;
    case pb::I64: *out = DType::i64; return true;
    case pb::U8: *out = DType::u8; return true;
    case pb::BOOL: *out = DType::boolean; return true;
    default: return false;
  }
}

const char* kind_name(int kind) {
  switch (kind) {
    case pb::REPLICATED: return "replicated";
    case pb::PER_RANK: return "per_rank";
    default: return "of an unknown kind";
  }
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "the name is empty";
  if (name.size() > kMaxNameBytes)
    return "the name is " + std::to_string(name.size()) + " bytes, more than the limit of " +
           std::to_string(kMaxNameBytes);
  if (!json::valid_utf8(name)) return "the name is not valid UTF-8";
  for (char c : name)
    if (uint8_t(c) < 0x20 || c == 0x7F) return "the name contains a control character";
  return "";
}

std::string entry_desc(const pb::TensorEntry& e) {
  // The name is quoted as JSON so that a hostile one cannot forge the rest of the message.
  std::string s = "tensor " + json::quote(json::valid_utf8(e.name()) ? e.name() : "<not UTF-8>");
  if (e.kind() == pb::PER_RANK) return s + " (per_rank of rank " + std::to_string(e.rank()) + ")";
  if (e.kind() == pb::REPLICATED) return s + " (replicated)";
  return s + " (kind " + std::to_string(int(e.kind())) + ")";
}

// ---------------------------------------------------------------------------- validation

void validate_manifest(const pb::Manifest& m, const std::string& where) {
  FATHOM_CHECK(m.format_version() == kFormatVersion, where, ": manifest format version ",
               m.format_version(), ", but this build of Fathom reads version ", kFormatVersion);
  FATHOM_CHECK(m.step() >= 0, where, ": step ", m.step(), " is negative");
  const int world = m.world_size();
  FATHOM_CHECK(world >= 1 && world <= kMaxWorldSize, where, ": world size ", world,
               " is not in [1, ", kMaxWorldSize, "]");
  const pb::Mesh& mesh = m.mesh();
  int64_t cells = 0;
  FATHOM_CHECK(mesh.dp() >= 1 && mesh.pp() >= 1 && mesh.tp() >= 1 &&
                   mul_fits(int64_t(mesh.dp()), int64_t(mesh.pp()), &cells) &&
                   mul_fits(cells, int64_t(mesh.tp()), &cells) && cells == world,
               where, ": mesh dp ", mesh.dp(), " x pp ", mesh.pp(), " x tp ", mesh.tp(),
               " does not multiply to the world size ", world);

  FATHOM_CHECK(m.files_size() == world, where, ": ", m.files_size(),
               " data files listed for a world of ", world, " ranks");
  std::map<std::string, std::pair<int, uint64_t>> files;  // name -> (rank, size)
  for (int r = 0; r < world; ++r) {
    const pb::FileEntry& f = m.files(r);
    FATHOM_CHECK(f.name() == rank_file_name(r), where, ": data file ", r, " is named ",
                 json::quote(json::valid_utf8(f.name()) ? f.name() : "<not UTF-8>"),
                 ", expected \"", rank_file_name(r), "\"");
    FATHOM_CHECK(f.size() <= uint64_t(INT64_MAX), where, ": data file ", f.name(),
                 " has an impossible size ", f.size());
    files.emplace(f.name(), std::make_pair(r, f.size()));
  }

  // (file, offset, length, index) for the overlap check; (kind, rank, name) for duplicates.
  std::vector<std::tuple<int, uint64_t, uint64_t, int>> spans;
  std::set<std::tuple<int, int, std::string>> seen;
  spans.reserve(size_t(m.tensors_size()));
  for (int i = 0; i < m.tensors_size(); ++i) {
    const pb::TensorEntry& e = m.tensors(i);
    const std::string tw = where + ": " + entry_desc(e);
    std::string why = name_problem(e.name());
    FATHOM_CHECK(why.empty(), where, ": tensor entry ", i, ": ", why);
    FATHOM_CHECK(e.kind() == pb::REPLICATED || e.kind() == pb::PER_RANK, tw, ": unknown kind ",
                 int(e.kind()));
    FATHOM_CHECK(e.rank() >= 0 && e.rank() < world, tw, ": rank ", e.rank(),
                 " is not in [0, ", world, ")");
    DType dtype;
    FATHOM_CHECK(from_pb(e.dtype(), &dtype), tw, ": unknown dtype code ", int(e.dtype()));
    FATHOM_CHECK(e.shape_size() <= kMaxDims, tw, ": ", e.shape_size(),
                 " dimensions, more than the limit of ", kMaxDims);
    std::vector<int64_t> shape(e.shape().begin(), e.shape().end());
    const uint64_t bytes = checked_nbytes(shape, itemsize(dtype), tw.c_str());
    FATHOM_CHECK(e.length() == bytes, tw, ": length ", e.length(), " bytes, but shape ",
                 detail::shape_text(shape), " ", dtype_name(dtype), " needs ", bytes);
    auto f = files.find(e.file());
    FATHOM_CHECK(f != files.end(), tw, ": data file ",
                 json::quote(json::valid_utf8(e.file()) ? e.file() : "<not UTF-8>"),
                 " is not one of the rank_<r>.bin files of this checkpoint");
    // A rank's own tensors live in its own file; replicated ones in the file of their writer.
    FATHOM_CHECK(f->second.first == e.rank(), tw, ": stored in ", e.file(), " but its rank is ",
                 e.rank());
    uint64_t end = 0;
    FATHOM_CHECK(add_fits(e.offset(), e.length(), &end) && end <= f->second.second, tw,
                 ": bytes [", e.offset(), ", ", e.offset(), " + ", e.length(), ") run past the end of ",
                 e.file(), " (", f->second.second, " bytes)");
    const int owner = e.kind() == pb::PER_RANK ? e.rank() : -1;
    FATHOM_CHECK(seen.emplace(int(e.kind()), owner, e.name()).second, tw,
                 ": listed twice");
    // Empty tensors occupy no bytes and overlap nothing.
    if (e.length() > 0) spans.emplace_back(e.rank(), e.offset(), e.length(), i);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    auto [f0, o0, l0, i0] = spans[i - 1];
    auto [f1, o1, l1, i1] = spans[i];
    // Sorted by offset, any overlap shows between neighbours.
    FATHOM_CHECK(f0 != f1 || o0 + l0 <= o1, where, ": ",
                 entry_desc(m.tensors(i1)), " at [", o1, ", ", o1 + l1, ") overlaps ",
                 entry_desc(m.tensors(i0)), " at [", o0, ", ", o0 + l0, ") in ",
                 rank_file_name(f1));
  }
}

pb::Manifest parse_manifest(std::string_view bytes, const std::string& where) {
  std::string_view payload = unframe(FrameKind::manifest, bytes, where);
  pb::Manifest m;
  FATHOM_CHECK(payload.size() <= size_t(INT32_MAX) &&
                   m.ParseFromArray(payload.data(), int(payload.size())),
               where, ": the manifest is not a valid protobuf Manifest message");
  validate_manifest(m, where);
  return m;
}

}  // namespace fathom::checkpoint::internal
