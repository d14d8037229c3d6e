#include "core/base/backend.h"

#include <fmt/format.h>

#include <chrono>

#include "core/base/error.h"

namespace convnet {

DeviceActivity DeviceActivity::operator-(const DeviceActivity& before) const {
  DeviceActivity d;
  d.kernel_launches = kernel_launches - before.kernel_launches;
  d.library_calls = library_calls - before.library_calls;
  d.host_to_device = host_to_device - before.host_to_device;
  d.device_to_host = device_to_host - before.device_to_host;
  d.device_to_device = device_to_device - before.device_to_device;
  d.host_waits = host_waits - before.host_waits;
  return d;
}

void Backend::set_precision(Precision p) {
  if (!supports_precision(p))
    throw ConfigError(fmt::format("train.precision: the {} backend does not compute in {}", name(), precision_name(p)));
  precision_ = p;
}

double Backend::elapsed_ms(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void Backend::conv2d_forward_with_moments(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                          const Conv2dParams& p, Tensor& mean, Tensor& m2) {
  conv2d_forward(x, w, bias, y, p);
  batch_norm_local_stats(y, mean, m2);
}

}  // namespace convnet
