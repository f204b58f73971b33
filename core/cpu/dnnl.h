#pragma once
// What the oneDNN kernels (conv.cpp, pool.cpp, batch_norm.cpp) share: one engine, a cache of
// primitives keyed by shape and parameters, and execution with Fathom's thread count.
//
// Primitives are built once per key (building one JIT-compiles code, ~0.1-1 ms) and kept;
// they run with a user-provided scratchpad allocated per call, so one cached primitive may run
// on several threads at once (oneDNN's library scratchpad is shared per primitive).
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "fathom/core/tensor.h"

namespace fathom::cpu::onednn {

using dnnl::memory;
using Args = std::unordered_map<int, memory>;

dnnl::engine& engine();

memory::data_type data_type(DType t);  // f32 or bf16; anything else is an Error naming op
memory::dims dims(const Tensor& t);

// A memory over the tensor's own (contiguous) buffer, described by `md`.
memory wrap(const Tensor& t, const memory::desc& md);

// The primitive cached under `key`, built by `make` on first use. Thread-safe; the cache is
// bounded (cleared when it reaches kMaxCached entries, a shape-churning program's guard).
inline constexpr size_t kMaxCached = 512;
std::shared_ptr<const void> cached_impl(const std::string& key,
                                        const std::function<std::shared_ptr<const void>()>& make);
template <class E, class F>
std::shared_ptr<const E> cached(const std::string& key, F&& make) {
  return std::static_pointer_cast<const E>(
      cached_impl(key, [&]() -> std::shared_ptr<const void> { return make(); }));
}

// The key text of a list of integers: "conv_fwd|2|3|..." .
template <class... Ts>
std::string key(const char* kind, const Ts&... parts) {
  std::string k = kind;
  auto add = [&](const auto& v) {
    if constexpr (std::is_integral_v<std::decay_t<decltype(v)>>) {
      k += '|';
      k += std::to_string(v);
    } else {
      for (auto e : v) { k += '|'; k += std::to_string(e); }
    }
  };
  (add(parts), ...);
  return k;
}

// Runs p on the calling thread's stream, with Fathom's thread count for this call
// (threads_here(): 1 under a SingleThreadGuard) and a scratchpad of pd's size; waits for it.
void execute(const dnnl::primitive& p, const dnnl::primitive_desc_base& pd, Args args);

// `user` as the primitive wants it (`want`): itself, or a reordered copy made now.
memory to_layout(const memory& user, const memory::desc& want);
// A destination of layout `want` for a primitive writing `user`; after execute,
// finish_output(user, that) reorders it back when they differ.
memory output_for(const memory& user, const memory::desc& want);
void finish_output(const memory& user, const memory& used);

// The primitive attributes every cached primitive is built with (user scratchpad).
dnnl::primitive_attr attr();

// Whether oneDNN runs bf16 natively here (avx512_core or newer); otherwise the kernels compute
// bf16 tensors in f32 copies.
bool native_bf16();

// Activation layout a convolution asks oneDNN for: "any" (oneDNN picks, blocked on AVX-512),
// "nchw" or "nhwc", read once from FATHOM_CONV_LAYOUT (docs/conv.md has what was measured).
memory::format_tag conv_activation_tag();

}  // namespace fathom::cpu::onednn
