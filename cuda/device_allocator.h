// Allocators for GPU backends: a caching device allocator (tensor memory on a CUDA device) and a
// pinned host allocator (page-locked staging buffers for fast, asynchronous host<->device copies).
#pragma once

#include <cstddef>
#include <memory>

#include "core/base/tensor.h"
#include "cuda/caching_pool.h"

namespace convnet::cuda {

// Device memory from cudaMalloc, cached by a CachingPool (see caching_pool.h for the reuse policy
// and the out-of-memory message). Blocks freed by tensors are reused by later allocations of the
// same size class without synchronizing the device, which is safe because all work touching the
// device's tensors is ordered on its one compute stream (device_compute_stream). Thread-safe.
class CudaCachingAllocator final : public Allocator {
 public:
  // Throws convnet::Error when device `index` does not exist (or there is no GPU).
  explicit CudaCachingAllocator(int index = 0);
  ~CudaCachingAllocator() override;  // returns cached blocks with cudaFree
  CudaCachingAllocator(const CudaCachingAllocator&) = delete;
  CudaCachingAllocator& operator=(const CudaCachingAllocator&) = delete;

  void* allocate(size_t bytes) override;  // never nullptr; throws convnet::Error when out of memory
  void deallocate(void* ptr, size_t bytes) noexcept override;
  Device device() const override { return {DeviceKind::cuda, index_}; }

  CachingPoolStats stats() const { return pool_.stats(); }
  // Returns every cached (free) block to the driver, e.g. before handing the GPU to another process.
  void empty_cache() { pool_.empty_cache(); }

 private:
  int index_;
  std::unique_ptr<RawAllocator> raw_;  // cudaMalloc/cudaFree on device index_
  CachingPool pool_;
};

// Page-locked host memory from cudaHostAlloc; device() is the CPU, so host code can read tensors
// allocated here directly. Not cached (cudaHostAlloc is slow): allocate staging buffers once and
// reuse them. The caller must not free a buffer while an asynchronous copy from or to it is in
// flight. Thread-safe.
class PinnedHostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;  // throws convnet::Error when cudaHostAlloc fails
  void deallocate(void* ptr, size_t bytes) noexcept override;
  Device device() const override { return {}; }
};

}  // namespace convnet::cuda
