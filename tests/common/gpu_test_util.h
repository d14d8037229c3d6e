// Helpers for the GPU tests (tests/gpu): creating the registered GPU backends, moving tensors
// through Backend::copy, poisoned device outputs and exact comparisons. Header-only, so CPU-only
// builds never compile it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "core/base/backend.h"
#include "core/base/backend_registry.h"
#include "core/base/tensor.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/device.h"
#include "cuda/gpu_backend.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/test_util.h"  // bitwise_equal

namespace convnet::testing {

inline constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// A fresh backend from the registry ("cuda", "cuda_tf32", "cudnn", "cudnn_tf32"); registers the GPU backends
// on first use. Throws convnet::Error without a device.
inline std::unique_ptr<Backend> make_gpu_backend(const std::string& name) {
  static std::once_flag registered;
  std::call_once(registered, [] { cuda::register_backends(); });
  return create_backend(name);
}

// Names the instances of a test parameterized by backend name ("GpuOps/MaxPool/cuda").
inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& test) {
  return test.param;
}

// A tensor on `backend`'s device with host's shape, dtype and contents.
inline Tensor to_device(Backend& backend, const Tensor& host) {
  Tensor device = backend.empty(host.shape(), host.dtype());
  backend.copy(device, host);
  return device;
}

// A host tensor with `device`'s shape, dtype and contents (the copy waits for the stream).
inline Tensor to_host(Backend& backend, const Tensor& device) {
  Tensor host(device.shape(), device.dtype());
  backend.copy(host, device);
  return host;
}

// A device f32 output full of NaN, so an element the op fails to write cannot pass a comparison.
inline Tensor poisoned_device(Backend& backend, const Shape& shape) {
  Tensor t = backend.empty(shape);
  backend.fill(t, kPoison);
  return t;
}

// A device output of any dtype with every byte 0xA5: an i32 reads as a large negative number
// (never a valid argmax), a u8 as 165 (never a valid mask value).
inline Tensor poisoned_device_bytes(Backend& backend, const Shape& shape, DType dtype) {
  Tensor host(shape, dtype);
  if (host.bytes() > 0) std::memset(host.raw(), 0xA5, host.bytes());
  return to_device(backend, host);
}

// Host f32 tensors with equal values element by element (-0 equals +0, NaN equals nothing): for
// ops whose result is exact (max, relu, copies) regardless of evaluation order.
inline ::testing::AssertionResult values_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.dtype() != DType::f32 || expected.dtype() != DType::f32 || actual.numel() != expected.numel())
    return ::testing::AssertionFailure() << "got " << dtype_name(actual.dtype()) << " " << shape_str(actual.shape())
                                         << ", expected " << dtype_name(expected.dtype()) << " "
                                         << shape_str(expected.shape());
  int64_t mismatches = 0;
  std::ostringstream detail;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    if (actual.f32()[i] == expected.f32()[i]) continue;
    if (++mismatches <= 5) detail << "\n  [" << i << "] got " << actual.f32()[i] << " expected " << expected.f32()[i];
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << actual.numel() << " elements differ" << detail.str();
}

// True when `text` contains `part` (error-message checks).
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A GPU backend named by the test parameter next to a cpu reference backend; skips (with the
// reason) when no device answers. Helpers move tensors up and down and allocate poisoned outputs.
class GpuVsCpuTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    CONVNET_SKIP_WITHOUT_GPU();
    gpu_ = make_gpu_backend(GetParam());
    cpu_ = make_cpu_backend();
  }

  Backend& gpu() { return *gpu_; }
  Backend& cpu() { return *cpu_; }
  Tensor up(const Tensor& host) { return to_device(*gpu_, host); }
  Tensor down(const Tensor& device) { return to_host(*gpu_, device); }
  Tensor poison(const Shape& shape) { return poisoned_device(*gpu_, shape); }

 private:
  std::unique_ptr<Backend> gpu_, cpu_;
};

}  // namespace convnet::testing
