#pragma once
// fathom::logging (the log/ layer): TensorBoard event files and Chrome trace timelines (docs/observability.md).
#include "fathom/log/chrome_trace.h"
#include "fathom/log/event_file.h"
