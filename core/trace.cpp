#include "fathom/core/trace.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "fathom/core/error.h"
#if FATHOM_WITH_CUDA
#include "fathom/core/cuda/event_timer.h"
#endif

namespace fathom::trace {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

// One ring for the process behind one mutex: a step records tens of spans, and an uncontended
// lock costs tens of nanoseconds, far below the 1% budget (bench/bench_trace_overhead.cpp).
struct Ring {
  std::mutex mu;
  std::vector<Span> spans;  // capacity slots once started
  size_t next = 0;          // slot the next span goes to
  size_t count = 0;         // filled slots, <= spans.size()
  uint64_t dropped = 0;
  std::map<uint32_t, std::string> threads;
};

Ring& ring() {
  static Ring* r = new Ring;  // never destroyed: threads may record during static destruction
  return *r;
}

std::atomic<uint32_t> g_next_thread{1};

void copy_text(char* dst, size_t cap, std::string_view src) {
  size_t n = std::min(src.size(), cap);
  if (n > 0) std::memcpy(dst, src.data(), n);  // an empty view's data() may be null
  dst[n] = '\0';
}

void push(const Span& s) {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  if (r.spans.empty()) return;  // stop() raced a start() that never ran
  if (r.count == r.spans.size()) ++r.dropped;
  else ++r.count;
  r.spans[r.next] = s;
  r.next = (r.next + 1) % r.spans.size();
}

#if FATHOM_WITH_CUDA
// Device spans resolve after the fact: they go in whether recording is still on or not (they
// were begun while it was).
void push_device_spans(double max_wait_s) {
  for (cuda::ResolvedSpan& d : cuda::resolve_event_spans(max_wait_s)) {
    Span s;
    s.category = d.category ? d.category : "";
    copy_text(s.name, kNameChars, d.name);
    copy_text(s.track, kNameChars, d.track);
    s.begin_us = d.begin_us;
    s.end_us = std::max(d.begin_us, d.end_us);
    s.thread = thread_id();
    s.args[0].key = "device";
    s.args[0].num = d.device;
    push(s);
  }
}
// Resolving as spans come keeps the pending list (and its events) bounded.
constexpr size_t kResolveEvery = 256;
#endif

}  // namespace

int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

void start(size_t capacity) {
  FATHOM_CHECK(capacity > 0, "trace::start: the capacity must be at least one span");
#if FATHOM_WITH_CUDA
  cuda::reset_event_spans();  // a new trace, a new clock reference per device
#endif
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  r.spans.assign(capacity, Span{});
  r.next = r.count = 0;
  r.dropped = 0;
  detail::g_enabled.store(true, std::memory_order_relaxed);
}

void stop() { detail::g_enabled.store(false, std::memory_order_relaxed); }

void clear() {
#if FATHOM_WITH_CUDA
  cuda::reset_event_spans();
#endif
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  r.next = r.count = 0;
  r.dropped = 0;
}

uint32_t thread_id() {
  thread_local uint32_t id = g_next_thread.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void name_this_thread(std::string name) {
  uint32_t id = thread_id();
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  r.threads[id] = std::move(name);
}

void record(const char* category, std::string_view name, int64_t begin_us, int64_t end_us,
            std::initializer_list<Arg> args, std::string_view track) {
  if (!enabled()) return;
  Span s;
  s.category = category ? category : "";
  copy_text(s.name, kNameChars, name);
  copy_text(s.track, kNameChars, track);
  s.begin_us = begin_us;
  s.end_us = std::max(begin_us, end_us);
  s.thread = thread_id();
  size_t i = 0;
  for (const Arg& a : args) {
    if (!a.key || i == kMaxArgs) continue;
    StoredArg& d = s.args[i++];
    d.key = a.key;
    d.num = a.num;
    d.is_text = a.is_text;
    if (a.is_text) copy_text(d.text, kTextChars, a.text);
  }
  push(s);
}

Snapshot snapshot() {
#if FATHOM_WITH_CUDA
  push_device_spans(1.0);
#endif
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  Snapshot out;
  out.dropped = r.dropped;
  out.threads = r.threads;
  out.spans.reserve(r.count);
  size_t first = (r.next + r.spans.size() - r.count) % std::max<size_t>(r.spans.size(), 1);
  for (size_t k = 0; k < r.count; ++k) out.spans.push_back(r.spans[(first + k) % r.spans.size()]);
  return out;
}

DeviceScope::DeviceScope(const char* category, std::string_view name, const Device& device,
                         void* stream, std::string_view track)
    : category_(category) {
  if (!enabled() || !device.is_cuda()) return;
#if FATHOM_WITH_CUDA
  name_ = name;
  track_ = track.empty() ? "cuda " + std::to_string(device.index) : std::string(track);
  handle_ = cuda::event_span_begin(device.index, stream);
#else
  (void)name, (void)stream, (void)track;
  ::fathom::detail::fail("trace::DeviceScope: ", device.str(), " given, but this build of Fathom ",
                         "has no CUDA backend (rebuild with -DFATHOM_CUDA=ON)");
#endif
}

DeviceScope::~DeviceScope() {
#if FATHOM_WITH_CUDA
  if (handle_ < 0) return;
  try {
    cuda::event_span_end(handle_, category_, name_, track_);
    if (cuda::pending_event_spans() >= kResolveEvery) push_device_spans(0);
  } catch (const std::exception& e) {
    // A destructor cannot throw: the span is lost, and said so.
    std::fprintf(stderr, "fathom: trace: a device span '%s' was lost: %s\n", name_.c_str(), e.what());
  }
#endif
}

}  // namespace fathom::trace
