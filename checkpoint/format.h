#pragma once
// The on-disk checkpoint format (docs/checkpoint.md), internal to the checkpoint layer:
// names, the checksummed frame around manifest.pb and rank_<r>.done, the dtype mapping and the
// validation of a manifest nobody trusts yet. The public API is checkpoint/checkpointer.h.
//
//   DIR/step_00000120/manifest.pb   frame + pb::Manifest (every tensor: where, what, XXH3-64)
//   DIR/step_00000120/rank_<r>.bin  rank r's tensors, each at a 64-byte aligned offset
//   DIR/latest                      "step_00000120\n" (for people and tools; load_latest
//                                   trusts the directory listing and the checks, not this)
//   DIR/.tmp.step_<N>.<pid>/        a save in flight; never read, removed when stale
#include <cstdint>
#include <string>
#include <string_view>

#include "fathom/core/dtype.h"
#include "manifest.pb.h"

namespace fathom::checkpoint::internal {

inline constexpr uint32_t kFormatVersion = 1;
// Tensors start at multiples of this in a rank file (whole cache lines; O_DIRECT-friendly).
inline constexpr uint64_t kAlign = 64;
// A manifest is ~100 bytes per tensor: 256 MB is millions of tensors. Bigger is refused before
// it is read, so a hostile size cannot make the reader allocate more.
inline constexpr uint64_t kMaxManifestBytes = uint64_t(256) << 20;
inline constexpr int kMaxWorldSize = 1 << 20;
inline constexpr int kMaxDims = 64;
inline constexpr size_t kMaxNameBytes = 4096;

// XXH3-64 with seed 0, one shot and streaming (both give the same value for the same bytes).
uint64_t xxh3(const void* data, size_t n);
class Xxh3 {
 public:
  Xxh3();
  ~Xxh3();
  Xxh3(const Xxh3&) = delete;
  Xxh3& operator=(const Xxh3&) = delete;
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  void* state_;  // XXH3_state_t (xxhash.h stays out of this header)
};
std::string hex64(uint64_t v);  // "0x0123456789abcdef"

// Names. Only the canonical spellings count: "step_" and at least 8 digits without extra
// leading zeros, so one step has exactly one directory name.
std::string step_dir_name(int64_t step);                  // step_00000120
bool parse_step_dir_name(std::string_view name, int64_t* step);
std::string rank_file_name(int rank);                      // rank_3.bin
std::string done_file_name(int rank);                      // rank_3.done
std::string failed_file_name(int rank);                    // rank_3.failed
inline constexpr const char* kManifestName = "manifest.pb";
inline constexpr const char* kLatestName = "latest";
inline constexpr const char* kTmpPrefix = ".tmp.";

// The 32-byte frame: magic (8), version (u32 LE), reserved 0 (u32), payload length (u64 LE),
// XXH3-64 of the first 24 header bytes and the payload (u64 LE); then the payload.
enum class FrameKind { manifest, done };
std::string frame(FrameKind kind, const std::string& payload);
// Checks everything in the frame and returns the payload. Errors start with `where`.
std::string_view unframe(FrameKind kind, std::string_view bytes, const std::string& where);

pb::DType to_pb(DType t);
// False for values that are no dtype (DTYPE_UNSPECIFIED, numbers from a newer or hostile file).
bool from_pb(int v, DType* out);
const char* kind_name(int kind);  // "replicated", "per_rank", or "kind <n>"

// A tensor name is non-empty UTF-8 of at most kMaxNameBytes, without control characters.
// Returns "" when fine, else why not.
std::string name_problem(std::string_view name);

// Parses and validates a manifest.pb's bytes: frame, protobuf, then every field. Throws
// fathom::Error starting with `where` (which names the directory and file) and, for a bad
// tensor entry, naming the tensor.
pb::Manifest parse_manifest(std::string_view bytes, const std::string& where);
// The field checks alone: version, step >= 0, world size and mesh, one file entry per rank
// named rank_<r>.bin, and for each tensor a valid name, kind, rank, dtype and shape, a length
// equal to numel * itemsize (checked arithmetic), [offset, offset + length) inside its file's
// recorded size, no two tensors of one file overlapping and no duplicate (kind, rank, name).
void validate_manifest(const pb::Manifest& m, const std::string& where);
// "tensor 'w' (per_rank of rank 1)", for messages.
std::string entry_desc(const pb::TensorEntry& e);

}  // namespace fathom::checkpoint::internal
