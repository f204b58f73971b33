// libFuzzer target over the readers of untrusted checkpoint bytes. The first input byte picks
// the reader, the rest is its input:
//   0  manifest.pb as a file (frame, checksum, version, then the Manifest)
//   1  the Manifest payload inside a valid frame (so the fuzzer gets past the checksum)
//   2  a safetensors file (through a memfd, so no disk I/O)
//   3  the JSON reader of safetensors headers
// Any fathom::Error is a correct refusal; any other exception, crash, leak, ASan report or an
// allocation past libFuzzer's -malloc_limit_mb is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "fathom/checkpoint/format.h"
#include "fathom/checkpoint/json.h"
#include "fathom/checkpoint/safetensors.h"
#include "fathom/core/error.h"

namespace ci = fathom::checkpoint::internal;

namespace {

void load_safetensors_bytes(std::string_view bytes) {
  static const int fd = ::memfd_create("fuzz_safetensors", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) return;
  if (!bytes.empty() && ::pwrite(fd, bytes.data(), bytes.size(), 0) != ssize_t(bytes.size())) return;
  fathom::checkpoint::load_safetensors(path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 4) {
      case 0: ci::parse_manifest(in, "fuzz"); break;
      case 1: ci::parse_manifest(ci::frame(ci::FrameKind::manifest, std::string(in)), "fuzz"); break;
      case 2: load_safetensors_bytes(in); break;
      case 3: fathom::checkpoint::json::parse(in, "fuzz"); break;
    }
  } catch (const fathom::Error&) {
  }
  return 0;
}
