#pragma once
// Device times for trace::DeviceScope (core/trace.h): a pair of CUDA events per span, recorded
// on the span's stream and resolved once they have completed, never by synchronizing the
// device while work is being queued. Times map onto trace::now_us()'s wall clock through one
// reference per device: an event recorded on an idle stream right after a host timestamp, at
// the device's first span after trace::start. Thread-safe.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fathom::cuda {

struct ResolvedSpan {
  const char* category;
  std::string name, track;
  int64_t begin_us, end_us;
  int device;
};

// Records the begin event on `stream` (null: the device's compute stream); returns a handle.
int64_t event_span_begin(int device, void* stream);
// Records the end event on the begin's stream; the span waits to be resolved.
void event_span_end(int64_t handle, const char* category, std::string_view name,
                    std::string_view track);
// Spans whose end event has completed, oldest first; waits up to `max_wait_s` for the others
// (0: none), which stay pending. Their events go back to the pool.
std::vector<ResolvedSpan> resolve_event_spans(double max_wait_s);
size_t pending_event_spans();
// Drops pending spans and the references (trace::start, trace::clear).
void reset_event_spans();

}  // namespace fathom::cuda
