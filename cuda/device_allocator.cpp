#include "cuda/device_allocator.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "core/base/error.h"
#include "cuda/check.h"
#include "cuda/device.h"

namespace convnet::cuda {

namespace {

class CudaRawAllocator final : public RawAllocator {
 public:
  explicit CudaRawAllocator(int index) : index_(index) {
    cudaDeviceProp prop{};
    CONVNET_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    description_ = fmt::format("cuda:{} {}", index, prop.name);
  }

  void* allocate(size_t bytes) override {
    DeviceGuard guard(index_);
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it so later checks do not report it again
      return nullptr;
    }
    CONVNET_CUDA_CHECK(status);
    return ptr;
  }

  void free(void* ptr, size_t) noexcept override {
    try {
      DeviceGuard guard(index_);
      // Fails only while the runtime is unloading at exit, when the memory goes away anyway.
      if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
    } catch (const Error&) {
      cudaGetLastError();
    }
  }

  MemoryInfo memory_info() noexcept override {
    MemoryInfo info;
    try {
      DeviceGuard guard(index_);
      if (cudaMemGetInfo(&info.free, &info.total) != cudaSuccess) {
        cudaGetLastError();
        info = {};
      }
    } catch (const Error&) {
      cudaGetLastError();
    }
    return info;
  }

  std::string describe() const override { return description_; }

 private:
  int index_;
  std::string description_;
};

std::unique_ptr<RawAllocator> make_raw_allocator(int index) {
  require_gpu("the CUDA caching allocator");
  const int count = gpu_count();
  if (index < 0 || index >= count)
    throw Error(
        fmt::format("CUDA device cuda:{} does not exist ({} device{} present)", index, count, count == 1 ? "" : "s"));
  return std::make_unique<CudaRawAllocator>(index);
}

}  // namespace

CudaCachingAllocator::CudaCachingAllocator(int index) : index_(index), raw_(make_raw_allocator(index)), pool_(*raw_) {}

CudaCachingAllocator::~CudaCachingAllocator() = default;

void* CudaCachingAllocator::allocate(size_t bytes) {
  return pool_.allocate(bytes);
}

void CudaCachingAllocator::deallocate(void* ptr, size_t) noexcept {
  pool_.deallocate(ptr);
}

void* PinnedHostAllocator::allocate(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaHostAlloc(&ptr, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw Error(fmt::format("allocating {} of pinned host memory: {}", format_bytes(bytes),
                            cuda_error_message(__FILE__, __LINE__, "cudaHostAlloc", status)));
  }
  return ptr;
}

void PinnedHostAllocator::deallocate(void* ptr, size_t) noexcept {
  if (cudaFreeHost(ptr) != cudaSuccess) cudaGetLastError();  // only fails while the runtime unloads
}

}  // namespace convnet::cuda
