#include "cuda/activity.h"

#include <atomic>

namespace convnet::cuda {

namespace {

struct Counters {
  std::atomic<int64_t> kernel_launches{0}, library_calls{0}, uploads{0}, downloads{0}, device_copies{0}, host_waits{0};
};

Counters& counters() {
  static Counters c;
  return c;
}

void bump(std::atomic<int64_t>& counter) noexcept {
  counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void count_kernel_launch() noexcept {
  bump(counters().kernel_launches);
}
void count_library_call() noexcept {
  bump(counters().library_calls);
}
void count_upload() noexcept {
  bump(counters().uploads);
}
void count_download() noexcept {
  bump(counters().downloads);
}
void count_device_copy() noexcept {
  bump(counters().device_copies);
}
void count_host_wait() noexcept {
  bump(counters().host_waits);
}

DeviceActivity device_activity() noexcept {
  const Counters& c = counters();
  DeviceActivity a;
  a.kernel_launches = c.kernel_launches.load(std::memory_order_relaxed);
  a.library_calls = c.library_calls.load(std::memory_order_relaxed);
  a.host_to_device = c.uploads.load(std::memory_order_relaxed);
  a.device_to_host = c.downloads.load(std::memory_order_relaxed);
  a.device_to_device = c.device_copies.load(std::memory_order_relaxed);
  a.host_waits = c.host_waits.load(std::memory_order_relaxed);
  return a;
}

}  // namespace convnet::cuda
