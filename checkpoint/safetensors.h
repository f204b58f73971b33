#pragma once
// safetensors (Hugging Face's weight format) written and read by Fathom, for interchange with
// the Python ecosystem. Layout: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the raw little-endian row-major data.
//
// Fathom dtypes map to F32, F64, BF16, F16, I32, I64, U8, BOOL. Files from elsewhere with a
// dtype Fathom has no type for (I8, U16, F8_E4M3, ...) are refused with the dtype named.
#include <map>
#include <string>

#include "fathom/core/tensor.h"

namespace fathom::checkpoint {

// Writes `tensors` (any device, any strides; written contiguous, sorted by name) and the
// optional string metadata to `path`. Names must be non-empty UTF-8 without control
// characters, and "__metadata__" is reserved. Atomic: the bytes go to a temporary file in the
// same directory, which is fsynced and renamed over `path`, then the directory is fsynced, so
// readers see the old file or the new one, never a mix. On failure nothing is left behind and
// the error names the path and the system's reason.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a safetensors file into CPU tensors. The header is validated in full before any tensor
// is allocated (sizes, offsets, coverage of the data section, dtypes, shapes), so a corrupt
// or hostile file is a fathom::Error naming the file (and tensor) rather than a crash or a
// huge allocation. BOOL bytes other than 0 and 1 are refused too. When `metadata` is given it
// receives the "__metadata__" entries (cleared first).
std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                               std::map<std::string, std::string>* metadata = nullptr);

}  // namespace fathom::checkpoint
