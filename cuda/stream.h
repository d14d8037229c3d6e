// RAII wrappers for CUDA streams and events, timing of GPU work with events, and the one compute
// stream per device that every GPU backend on it queues its work on. Streams and events are
// created on the calling thread's current device (see DeviceGuard in device.h). Every host wait
// (synchronize) is counted in cuda/activity.h.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <utility>

namespace convnet::cuda {

// A non-blocking stream: it does not synchronize with the legacy default stream, so work on it
// overlaps with other streams. Move-only.
class CudaStream {
 public:
  CudaStream();  // throws convnet::Error
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  void synchronize() const;  // waits for all work queued so far; throws convnet::Error on failure

 private:
  cudaStream_t stream_ = nullptr;
};

// An event. With timing enabled it can measure elapsed time between two recorded events.
class CudaEvent {
 public:
  explicit CudaEvent(bool timing = true);  // throws convnet::Error
  ~CudaEvent();
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& other) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream);  // marks the point after all work queued on `stream` so far
  void synchronize() const;          // waits until the recorded work has finished
  bool ready() const;                // true when the recorded work has finished (does not wait)
  // Milliseconds from `start` to this event; both must be recorded, finished and timing-enabled.
  float elapsed_ms(const CudaEvent& start) const;

 private:
  cudaEvent_t event_ = nullptr;
};

// The compute stream of device `index`, shared by every GPU backend on that device for as long as
// one holds it (then destroyed; the next request creates a new one). Sharing is what makes mixing
// backends safe: a `cuda` layer's output read by a `cudnn` layer, or a block freed to one
// backend's caching pool and reused by it, are ordered by the stream itself, with no hand-over
// events and no cross-stream frees. Thread-safe.
std::shared_ptr<CudaStream> device_compute_stream(int index);

// Runs `work` (which queues GPU work on `stream`) between two events and returns the GPU time it
// took in milliseconds. Waits for the work to finish.
template <class Work>
float time_on_stream_ms(cudaStream_t stream, Work&& work) {
  CudaEvent start, stop;
  start.record(stream);
  std::forward<Work>(work)();
  stop.record(stream);
  stop.synchronize();
  return stop.elapsed_ms(start);
}

}  // namespace convnet::cuda
