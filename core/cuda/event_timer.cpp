#include "fathom/core/cuda/event_timer.h"

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "fathom/core/cuda/runtime.h"
#include "fathom/core/trace.h"

namespace fathom::cuda {

namespace {

struct Open {
  cudaEvent_t begin;
  int device;
  cudaStream_t stream;
};
struct Pending {
  cudaEvent_t begin, end;
  int device;
  const char* category;
  std::string name, track;
};
struct Reference {
  cudaEvent_t event;
  int64_t host_us;
};

struct Timer {
  std::mutex mu;
  std::map<int, std::vector<cudaEvent_t>> free;  // events belong to the device they were made on
  std::map<int, Reference> refs;
  std::unordered_map<int64_t, Open> open;
  std::deque<Pending> pending;
  int64_t next = 0;

  cudaEvent_t take(int device) {
    auto& pool = free[device];
    if (!pool.empty()) {
      cudaEvent_t e = pool.back();
      pool.pop_back();
      return e;
    }
    DeviceGuard g(device);
    cudaEvent_t e = nullptr;
    FATHOM_CUDA_CHECK(cudaEventCreate(&e));  // with timing: the default flags
    return e;
  }
  void give(int device, cudaEvent_t e) { free[device].push_back(e); }

  // The device's clock origin: the stream is drained first, so the event runs at once and its
  // device time is the host time taken just before it (within a launch, a few microseconds).
  const Reference& reference(int device, cudaStream_t s) {
    auto it = refs.find(device);
    if (it != refs.end()) return it->second;
    DeviceGuard g(device);
    FATHOM_CUDA_CHECK(cudaStreamSynchronize(s));
    cudaEvent_t e = take(device);
    const int64_t host = trace::now_us();
    FATHOM_CUDA_CHECK(cudaEventRecord(e, s));
    FATHOM_CUDA_CHECK(cudaEventSynchronize(e));
    return refs.emplace(device, Reference{e, host}).first->second;
  }
};

Timer& timer() {
  static Timer* t = new Timer;  // never destroyed: spans may end during static destruction
  return *t;
}

int64_t device_us(const Reference& ref, cudaEvent_t e) {
  float ms = 0;
  FATHOM_CUDA_CHECK(cudaEventElapsedTime(&ms, ref.event, e));
  return ref.host_us + int64_t(double(ms) * 1000.0);
}

}  // namespace

int64_t event_span_begin(int device, void* stream) {
  check_device(device, "trace::DeviceScope");
  cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : current_stream(device);
  Timer& t = timer();
  std::lock_guard<std::mutex> lk(t.mu);
  t.reference(device, s);
  cudaEvent_t b = t.take(device);
  DeviceGuard g(device);
  FATHOM_CUDA_CHECK(cudaEventRecord(b, s));
  const int64_t h = t.next++;
  t.open.emplace(h, Open{b, device, s});
  return h;
}

void event_span_end(int64_t handle, const char* category, std::string_view name,
                    std::string_view track) {
  Timer& t = timer();
  std::lock_guard<std::mutex> lk(t.mu);
  auto it = t.open.find(handle);
  FATHOM_CHECK(it != t.open.end(), "trace::DeviceScope: span ", handle, " was never begun");
  Open o = it->second;
  t.open.erase(it);
  cudaEvent_t e = t.take(o.device);
  DeviceGuard g(o.device);
  FATHOM_CUDA_CHECK(cudaEventRecord(e, o.stream));
  t.pending.push_back({o.begin, e, o.device, category, std::string(name), std::string(track)});
}

std::vector<ResolvedSpan> resolve_event_spans(double max_wait_s) {
  Timer& t = timer();
  std::lock_guard<std::mutex> lk(t.mu);
  std::vector<ResolvedSpan> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(max_wait_s);
  std::deque<Pending> left;
  while (!t.pending.empty()) {
    Pending p = std::move(t.pending.front());
    t.pending.pop_front();
    DeviceGuard g(p.device);
    cudaError_t q = cudaEventQuery(p.end);
    while (q == cudaErrorNotReady && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      q = cudaEventQuery(p.end);
    }
    if (q == cudaErrorNotReady) {
      left.push_back(std::move(p));
      continue;
    }
    FATHOM_CUDA_CHECK(q);
    auto ref_it = t.refs.find(p.device);
    if (ref_it == t.refs.end()) {  // begun before a trace::start or clear: not this trace's
      t.give(p.device, p.begin);
      t.give(p.device, p.end);
      continue;
    }
    const Reference& ref = ref_it->second;
    out.push_back({p.category, std::move(p.name), std::move(p.track), device_us(ref, p.begin),
                   device_us(ref, p.end), p.device});
    t.give(p.device, p.begin);
    t.give(p.device, p.end);
  }
  t.pending = std::move(left);
  return out;
}

size_t pending_event_spans() {
  Timer& t = timer();
  std::lock_guard<std::mutex> lk(t.mu);
  return t.pending.size();
}

void reset_event_spans() {
  Timer& t = timer();
  std::lock_guard<std::mutex> lk(t.mu);
  for (Pending& p : t.pending) {
    DeviceGuard g(p.device);
    // Allowed while still queued: the driver frees them once they complete.
    FATHOM_CUDA_CHECK(cudaEventDestroy(p.begin));
    FATHOM_CUDA_CHECK(cudaEventDestroy(p.end));
  }
  t.pending.clear();
  for (auto& [device, ref] : t.refs) t.give(device, ref.event);
  t.refs.clear();
}

}  // namespace fathom::cuda
