#include "cuda/activity.h"

#include <array>
#include <atomic>
#include <cstddef>

namespace convnet::cuda {

namespace {

constexpr size_t kKinds = static_cast<size_t>(Activity::host_wait) + 1;

std::array<std::atomic<int64_t>, kKinds>& counters() {
  static std::array<std::atomic<int64_t>, kKinds> c{};
  return c;
}

int64_t counted(Activity what) noexcept {
  return counters()[static_cast<size_t>(what)].load(std::memory_order_relaxed);
}

}  // namespace

void count(Activity what) noexcept {
  counters()[static_cast<size_t>(what)].fetch_add(1, std::memory_order_relaxed);
}

DeviceActivity device_activity() noexcept {
  DeviceActivity a;
  a.kernel_launches = counted(Activity::kernel_launch);
  a.library_calls = counted(Activity::library_call);
  a.host_to_device = counted(Activity::upload);
  a.device_to_host = counted(Activity::download);
  a.device_to_device = counted(Activity::device_copy);
  a.host_waits = counted(Activity::host_wait);
  return a;
}

}  // namespace convnet::cuda
