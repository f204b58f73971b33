#pragma once
// A span recorder for timelines: what ran on which thread, from when to when. Off by default;
// when off, recording is one relaxed atomic load. When on, spans go into one bounded ring
// buffer for the process (the oldest are overwritten once it is full, and counted), so a long
// run keeps its last `capacity` spans in fixed memory. log/chrome_trace.h turns a snapshot
// into Chrome trace-event JSON (Perfetto, chrome://tracing).
//
// It lives in core so that every layer can record into it: comm (each collective), autograd
// (backward), parallel (DDP buckets) and training scripts (data, forward, optimizer step).
//
//   trace::start();                                    // or trace::start(1 << 20)
//   { trace::Scope s("train", "forward"); model.forward(x); }
//   trace::record("comm", "allreduce", t0, t1, {{"bytes", 4096}, {"group", "world"}});
//   trace::Snapshot snap = trace::snapshot();
//
// Times are wall-clock microseconds (system_clock), the clock DeepComm's own trace uses, so
// ranks on one host (or on NTP-synchronised hosts) line up in one merged timeline.
#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/core/device.h"

namespace fathom::trace {

namespace detail {
extern std::atomic<bool> g_enabled;
}

inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }

// Wall-clock microseconds since the Unix epoch.
int64_t now_us();

// A span's argument: a number or a short text. Keys must outlive the recorder (string
// literals); texts are copied, cut at kTextChars.
struct Arg {
  Arg(const char* k, int64_t v) : key(k), num(v) {}
  Arg(const char* k, int v) : key(k), num(v) {}
  Arg(const char* k, uint64_t v) : key(k), num(int64_t(v)) {}
  Arg(const char* k, std::string_view v) : key(k), text(v), is_text(true) {}
  Arg(const char* k, const char* v) : key(k), text(v), is_text(true) {}
  const char* key;
  int64_t num = 0;
  std::string_view text;
  bool is_text = false;
};

inline constexpr size_t kNameChars = 47, kTextChars = 31, kMaxArgs = 4;

struct StoredArg {
  const char* key = nullptr;  // null: unused
  int64_t num = 0;
  bool is_text = false;
  char text[kTextChars + 1] = {};
};

struct Span {
  const char* category = "";      // a string literal
  char name[kNameChars + 1] = {};
  char track[kNameChars + 1] = {};  // empty: the recording thread's row
  int64_t begin_us = 0, end_us = 0;
  uint32_t thread = 0;            // trace::thread_id() of the recording thread
  std::array<StoredArg, kMaxArgs> args{};
};

// Starts recording into a fresh ring of `capacity` spans (any earlier spans are dropped).
// Throws fathom::Error for a capacity of 0.
inline constexpr size_t kDefaultCapacity = size_t(1) << 16;
void start(size_t capacity = kDefaultCapacity);
// Stops recording; the spans stay until the next start() or clear().
void stop();
void clear();

// Records one span when enabled (no-op otherwise). `track` names a row of its own (e.g. a DDP
// bucket's, whose spans overlap the thread's backward span); empty: the calling thread's row.
// At most kMaxArgs arguments are kept. A name longer than kNameChars is cut.
void record(const char* category, std::string_view name, int64_t begin_us, int64_t end_us,
            std::initializer_list<Arg> args = {}, std::string_view track = {});

// A small number naming the calling thread (1 for the first thread that asks, then 2, ...).
uint32_t thread_id();
// Names the calling thread in timelines ("main", "comm"); unnamed threads show as "thread N".
void name_this_thread(std::string name);

struct Snapshot {
  std::vector<Span> spans;                  // oldest first
  uint64_t dropped = 0;                     // overwritten once the ring was full
  std::map<uint32_t, std::string> threads;  // thread_id -> name, for the named ones
};
// A copy of what the ring holds now; recording may continue.
Snapshot snapshot();

// Times the enclosing block when recording was on at its start, with at most one numeric
// argument (e.g. {"step", 12}). The name must outlive the scope (a literal, or a string the
// caller keeps).
class Scope {
 public:
  Scope(const char* category, std::string_view name, const char* key = nullptr, int64_t value = 0)
      : on_(enabled()), category_(category), name_(name), key_(key), value_(value) {
    if (on_) begin_ = now_us();
  }
  ~Scope() {
    if (!on_) return;
    if (key_) record(category_, name_, begin_, now_us(), {Arg(key_, value_)});
    else record(category_, name_, begin_, now_us());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool on_;
  const char* category_;
  std::string_view name_;
  const char* key_;
  int64_t value_;
  int64_t begin_ = 0;
};

// Times GPU work on the device: CUDA events recorded on `stream` (null: the device's compute
// stream) when the scope begins and ends, so the span covers what was queued on that stream in
// between, as the GPU ran it. Spans are resolved to the wall clock of host spans once their
// events have completed: at snapshot() (which waits up to 1 s for unfinished ones) and as
// spans accumulate, never by synchronizing the device meanwhile. Each goes on the row `track`
// (empty: "cuda <index>"), with a "device" argument. With recording off, or on a CPU device
// (no device work to time), it records nothing; a CUDA device in a build without CUDA is an
// error. core/cuda/event_timer.h has the clock mapping.
class DeviceScope {
 public:
  DeviceScope(const char* category, std::string_view name, const Device& device,
              void* stream = nullptr, std::string_view track = {});
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int64_t handle_ = -1;
  const char* category_;
  std::string name_, track_;
};

}  // namespace fathom::trace
