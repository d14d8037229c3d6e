#include "cuda/stream.h"

#include <map>
#include <mutex>

#include "cuda/activity.h"
#include "cuda/check.h"
#include "cuda/device.h"

namespace convnet::cuda {

CudaStream::CudaStream() {
  CONVNET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaStream::~CudaStream() {
  // Destroying a stream with queued work is allowed: the work completes, then resources are freed.
  if (stream_ != nullptr && cudaStreamDestroy(stream_) != cudaSuccess) cudaGetLastError();
}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    CudaStream old(std::move(*this));
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

void CudaStream::synchronize() const {
  count(Activity::host_wait);
  CONVNET_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaEvent::CudaEvent(bool timing) {
  CONVNET_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

CudaEvent::~CudaEvent() {
  if (event_ != nullptr && cudaEventDestroy(event_) != cudaSuccess) cudaGetLastError();
}

CudaEvent& CudaEvent::operator=(CudaEvent&& other) noexcept {
  if (this != &other) {
    CudaEvent old(std::move(*this));
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

void CudaEvent::record(cudaStream_t stream) {
  CONVNET_CUDA_CHECK(cudaEventRecord(event_, stream));
}

void CudaEvent::synchronize() const {
  count(Activity::host_wait);
  CONVNET_CUDA_CHECK(cudaEventSynchronize(event_));
}

bool CudaEvent::ready() const {
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) return false;
  CONVNET_CUDA_CHECK(status);
  return true;
}

float CudaEvent::elapsed_ms(const CudaEvent& start) const {
  float ms = 0.0f;
  CONVNET_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

std::shared_ptr<CudaStream> device_compute_stream(int index) {
  static std::mutex mutex;
  static std::map<int, std::weak_ptr<CudaStream>> streams;
  const std::lock_guard lock(mutex);
  std::weak_ptr<CudaStream>& slot = streams[index];
  if (std::shared_ptr<CudaStream> shared = slot.lock()) return shared;
  const DeviceGuard guard(index);
  auto stream = std::make_shared<CudaStream>();
  slot = stream;
  return stream;
}

}  // namespace convnet::cuda
