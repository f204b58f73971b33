#include "fathom/core/cpu/dnnl.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "fathom/core/cpu/threads.h"
#include "fathom/core/error.h"

namespace fathom::cpu::onednn {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

memory::data_type data_type(DType t) {
  switch (t) {
    case DType::f32: return memory::data_type::f32;
    case DType::bf16: return memory::data_type::bf16;
    default: detail::fail("oneDNN: no ", dtype_name(t), " kernels (f32 and bf16 only)");
  }
}

memory::dims dims(const Tensor& t) { return memory::dims(t.shape().begin(), t.shape().end()); }

memory wrap(const Tensor& t, const memory::desc& md) {
  return memory(md, engine(), t.data_ptr());
}

std::shared_ptr<const void> cached_impl(
    const std::string& key, const std::function<std::shared_ptr<const void>()>& make) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<const void>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Built outside the lock (JIT compilation is slow); two threads racing on one key build
  // twice and the first one stored wins, which is harmless.
  std::shared_ptr<const void> made = make();
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kMaxCached) cache.clear();
  return cache.emplace(key, std::move(made)).first->second;
}

dnnl::primitive_attr attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

void execute(const dnnl::primitive& p, const dnnl::primitive_desc_base& pd, Args args) {
  // Debian's oneDNN threads through OpenMP: it takes the calling thread's OpenMP thread count,
  // so Fathom's count for this call is passed on there (docs/conv.md).
  omp_set_num_threads(threads_here());
  memory::desc sd = pd.scratchpad_desc();
  std::vector<uint8_t> scratch;
  if (sd.get_size()) {
    scratch.resize(sd.get_size());
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(sd, engine(), scratch.data()));
  }
  thread_local dnnl::stream s(engine());
  p.execute(s, args);
  s.wait();
}

namespace {
void reorder(const memory& from, const memory& to) {
  dnnl::reorder::primitive_desc pd(from, to, attr());
  execute(dnnl::reorder(pd), pd, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}
}  // namespace

memory to_layout(const memory& user, const memory::desc& want) {
  if (user.get_desc() == want) return user;
  memory m(want, engine());
  reorder(user, m);
  return m;
}

memory output_for(const memory& user, const memory::desc& want) {
  return user.get_desc() == want ? user : memory(want, engine());
}

void finish_output(const memory& user, const memory& used) {
  if (used.get_data_handle() != user.get_data_handle()) reorder(used, user);
}

bool native_bf16() {
  static const bool ok = [] {
    auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    auto want = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    return (isa & want) == want;
  }();
  return ok;
}

memory::format_tag conv_activation_tag() {
  static const memory::format_tag tag = [] {
    const char* v = std::getenv("FATHOM_CONV_LAYOUT");
    if (!v || !*v || std::strcmp(v, "nchw") == 0) return memory::format_tag::nchw;
    if (std::strcmp(v, "any") == 0) return memory::format_tag::any;
    if (std::strcmp(v, "nhwc") == 0) return memory::format_tag::nhwc;
    detail::fail("FATHOM_CONV_LAYOUT must be any, nchw or nhwc, got '", v, "'");
  }();
  return tag;
}

}  // namespace fathom::cpu::onednn
