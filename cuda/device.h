// What CUDA devices and libraries this process can use. Safe to call on machines without a GPU
// or driver: nothing here throws except require_gpu (and query_gpus on a failing device).
// No CUDA header is needed to include this file, so the CLI can print it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace convnet::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int sm_major = 0, sm_minor = 0;
  int sm_count = 0;          // streaming multiprocessors
  size_t total_memory = 0;   // bytes
  int driver_version = 0;    // CUDA version the driver supports, 1000 * major + 10 * minor (13000 = 13.0)
  int runtime_version = 0;   // loaded CUDA runtime, same encoding
  size_t cudnn_version = 0;  // loaded cuDNN library, 10000 * major + 100 * minor + patch
  int cublas_version = 0;    // loaded cuBLAS library, 10000 * major + 100 * minor + patch
};

// Number of usable CUDA devices; 0 when there is no driver, no device, or any other error.
// Never throws.
int gpu_count();

// Why gpu_count() is 0 ("cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-capable device is
// detected"); empty when at least one device is usable. Never throws.
std::string gpu_unavailable_reason();

// One entry per device, in index order; empty when gpu_count() is 0. Throws convnet::Error when a
// present device cannot be queried.
std::vector<GpuInfo> query_gpus();

// Human summary, one line per device ("cuda:0 NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB"),
// or "no CUDA device available (<gpu_unavailable_reason()>)". Never throws.
std::string describe_gpus();

// Versions compiled against and loaded: CUDA toolkit/runtime/driver, cuDNN (headers and library,
// which can differ), cuBLAS. Works without a GPU. Never throws.
std::string cuda_build_info();

// Throws convnet::Error "the cuda backend needs a CUDA device: <reason>" when gpu_count() is 0;
// `what` names the component asking ("the cuda backend").
void require_gpu(const std::string& what);

// Makes `index` the calling thread's current CUDA device and restores the previous one on
// destruction (CUDA keeps the current device per thread). Throws convnet::Error when it fails.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

// "1.50 GiB", "512.00 MiB", "3.00 KiB", "12 B": byte counts in messages.
std::string format_bytes(size_t bytes);

}  // namespace convnet::cuda
