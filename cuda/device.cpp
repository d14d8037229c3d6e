#include "cuda/device.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <fmt/format.h>
#include <library_types.h>

#include <exception>

#include "core/base/error.h"
#include "cuda/check.h"

namespace convnet::cuda {

namespace {

// Device count and, when it is 0, why. Clears the runtime's last error so a failed probe does not
// surface later from an unrelated cudaGetLastError.
struct Probe {
  int count = 0;
  std::string reason;
};

Probe probe_devices() {
  Probe probe;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    probe.reason = fmt::format("cudaGetDeviceCount: {}: {}", cudaGetErrorName(status), cudaGetErrorString(status));
  } else if (count <= 0) {
    probe.reason = "cudaGetDeviceCount found no device";
  } else {
    probe.count = count;
  }
  return probe;
}

int loaded_cublas_version() {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
    return 0;
  return major * 10000 + minor * 100 + patch;
}

// 13000 -> "13.0"; 0 -> "none".
std::string cuda_version_str(int version) {
  if (version <= 0) return "none";
  return fmt::format("{}.{}", version / 1000, version % 1000 / 10);
}

// 91900 -> "9.19.0" (cuDNN and cuBLAS encoding).
std::string library_version_str(size_t version) {
  if (version == 0) return "unknown";
  return fmt::format("{}.{}.{}", version / 10000, version % 10000 / 100, version % 100);
}

}  // namespace

int gpu_count() {
  try {
    return probe_devices().count;
  } catch (const std::exception&) {  // formatting can allocate; nothing else here throws
    return 0;
  }
}

std::string gpu_unavailable_reason() {
  try {
    return probe_devices().reason;
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::vector<GpuInfo> query_gpus() {
  const int count = gpu_count();
  std::vector<GpuInfo> gpus;
  if (count == 0) return gpus;
  int driver = 0, runtime = 0;
  CONVNET_CUDA_CHECK(cudaDriverGetVersion(&driver));
  CONVNET_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  const size_t cudnn = cudnnGetVersion();
  const int cublas = loaded_cublas_version();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    CONVNET_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    GpuInfo info;
    info.index = i;
    info.name = prop.name;
    info.sm_major = prop.major;
    info.sm_minor = prop.minor;
    info.sm_count = prop.multiProcessorCount;
    info.total_memory = prop.totalGlobalMem;
    info.driver_version = driver;
    info.runtime_version = runtime;
    info.cudnn_version = cudnn;
    info.cublas_version = cublas;
    gpus.push_back(std::move(info));
  }
  return gpus;
}

std::string describe_gpus() {
  try {
    const Probe probe = probe_devices();
    if (probe.count == 0) return fmt::format("no CUDA device available ({})", probe.reason);
    std::string out;
    for (const GpuInfo& gpu : query_gpus()) {
      if (!out.empty()) out += '\n';
      out += fmt::format("cuda:{} {}, sm_{}{}, {} SMs, {}", gpu.index, gpu.name, gpu.sm_major, gpu.sm_minor,
                         gpu.sm_count, format_bytes(gpu.total_memory));
    }
    return out;
  } catch (const std::exception& e) {
    return fmt::format("no CUDA device available ({})", e.what());
  }
}

std::string cuda_build_info() {
  try {
    int runtime = 0, driver = 0;
    if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;  // 0 also means "no driver"
    cudaGetLastError();
    return fmt::format(
        "CUDA toolkit {} (runtime {}, driver supports {}), cuDNN {} (headers) / {} (library), "
        "cuBLAS {} (headers) / {} (library)",
        cuda_version_str(CUDART_VERSION), cuda_version_str(runtime), cuda_version_str(driver),
        library_version_str(CUDNN_VERSION), library_version_str(cudnnGetVersion()), library_version_str(CUBLAS_VERSION),
        library_version_str(static_cast<size_t>(loaded_cublas_version())));
  } catch (const std::exception& e) {
    return fmt::format("CUDA build information unavailable: {}", e.what());
  }
}

void require_gpu(const std::string& what) {
  const Probe probe = probe_devices();
  if (probe.count == 0) throw Error(fmt::format("{} needs a CUDA device: {}", what, probe.reason));
}

DeviceGuard::DeviceGuard(int index) {
  CONVNET_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index) {
    CONVNET_CUDA_CHECK(cudaSetDevice(index));
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  // Restoring the device the thread had cannot fail unless the runtime is shutting down.
  if (switched_ && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
}

std::string format_bytes(size_t bytes) {
  constexpr double kKiB = 1024.0;
  const double b = static_cast<double>(bytes);
  if (b < kKiB) return fmt::format("{} B", bytes);
  if (b < kKiB * kKiB) return fmt::format("{:.2f} KiB", b / kKiB);
  if (b < kKiB * kKiB * kKiB) return fmt::format("{:.2f} MiB", b / (kKiB * kKiB));
  return fmt::format("{:.2f} GiB", b / (kKiB * kKiB * kKiB));
}

}  // namespace convnet::cuda
