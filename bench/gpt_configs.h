#pragma once
// The GPT sizes the benchmarks share (bench_gpt, bench_zero), as the anchors name them
// (../shared/anchors/torch_gpt_bench.py): layers, heads, width, vocabulary, sequence, batch.
#include <string>

#include "fathom/comm/flags.h"

namespace fathom::bench {

struct GptSize {
  int64_t L, H, C, V, T, B;
};
inline constexpr const char* kGptSizesHelp =
    "tiny (L4 H4 C128 V256 T64 B16), small (L6 H6 C384 V256 T256 B64) or gpt2 (L12 H12 C768 V50304 T1024 B16)";

// The size --config names; anything else fails the flags.
inline GptSize gpt_size(const examples::Flags& flags, const std::string& name) {
  if (name == "tiny") return {4, 4, 128, 256, 64, 16};
  if (name == "small") return {6, 6, 384, 256, 256, 64};
  if (name == "gpt2") return {12, 12, 768, 50304, 1024, 16};
  flags.fail("--config must be tiny, small or gpt2");
}

}  // namespace fathom::bench
