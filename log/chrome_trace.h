#pragma once
// Timelines as Chrome trace-event JSON, the format Perfetto (ui.perfetto.dev) and
// chrome://tracing open (PyTorch's profiler exports it too). A span becomes a complete event
// ("ph":"X") of the process `rank`, on the row of the thread that recorded it or of its track
// (a DDP bucket, a process group's collectives); metadata events name the rows.
//
//   std::string mine = logging::chrome_trace_events(trace::snapshot(), rank, origin_us);
//   ... gather every rank's string on one rank ...
//   logging::write_file(path, logging::chrome_trace_document(all_ranks));
//
// Every number written is an integer (ts and dur in microseconds since origin_us), so the
// file is plain JSON for any reader.
#include <cstdint>
#include <string>
#include <vector>

#include "fathom/core/trace.h"

namespace fathom::logging {

// The events of one process: JSON objects separated by ",\n", without brackets (so the
// events of several ranks are joined by a comma). origin_us is subtracted from every time;
// a span that began before it is clamped to it.
std::string chrome_trace_events(const trace::Snapshot& snap, int rank, int64_t origin_us);

// One trace document: {"traceEvents":[...],"displayTimeUnit":"ms"} from the ranks' events.
std::string chrome_trace_document(const std::vector<std::string>& per_rank_events);

// The earliest span's begin (INT64_MAX when there is none): an origin for chrome_trace_events.
int64_t earliest_begin(const trace::Snapshot& snap);

// Writes `text` to `path` through a temporary name and a rename, so a reader never sees half a
// file. Throws fathom::Error naming the path.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace fathom::logging
