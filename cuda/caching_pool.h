// CachingPool: the device-independent half of the caching allocator. It rounds requests up to
// size classes, keeps freed blocks in a best-fit free list and hands them out again, so a training
// loop that repeats the same allocations stops calling the raw allocator (cudaMalloc/cudaFree,
// which synchronize the device) after its first step.
//
// Blocks are never split or merged: a cached block is reused only for a request whose rounded
// size it exceeds by at most 2x, which bounds waste to half a block. Reuse is safe for device
// memory because every user of a block is ordered on its device's one compute stream, which every
// GPU backend on the device shares (the copy stream's uploads hold their targets until the
// compute stream has waited for them: GpuBackend::copy_async).
// Thread-safe; the raw allocator is called with the pool's mutex held.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace convnet::cuda {

// The raw memory source a pool caches: cudaMalloc/cudaFree in production, a fake in tests.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  // A block of exactly `bytes` (> 0), or nullptr when the device is out of memory. Other failures
  // throw convnet::Error.
  virtual void* allocate(size_t bytes) = 0;
  virtual void free(void* ptr, size_t bytes) noexcept = 0;
  // Free and total device memory in bytes, for out-of-memory messages; {0, 0} when unknown.
  struct MemoryInfo {
    size_t free = 0, total = 0;
  };
  virtual MemoryInfo memory_info() noexcept = 0;
  // The device for messages: "cuda:0 NVIDIA H100 80GB HBM3".
  virtual std::string describe() const = 0;
};

struct CachingPoolStats {
  size_t bytes_in_use = 0;       // sum of rounded sizes of blocks handed out and not yet returned
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use
  size_t bytes_cached = 0;       // sum of sizes of freed blocks kept for reuse
  size_t blocks_in_use = 0;
  size_t blocks_cached = 0;
  size_t raw_allocs = 0;   // successful raw allocate calls (cudaMalloc)
  size_t raw_frees = 0;    // raw free calls (cudaFree)
  size_t cache_hits = 0;   // requests served from the free list
  size_t oom_retries = 0;  // times the cache was emptied to retry a failed raw allocation
};

class CachingPool {
 public:
  static constexpr size_t kSmallGranularity = 512;              // requests up to kSmallLimit
  static constexpr size_t kSmallLimit = size_t{1} << 20;        // 1 MiB
  static constexpr size_t kLargeGranularity = size_t{2} << 20;  // 2 MiB, for larger requests

  // `raw` must outlive the pool.
  explicit CachingPool(RawAllocator& raw) : raw_(raw) {}
  // Returns cached blocks to the raw allocator. Blocks still in use are left alone (they belong to
  // tensors that outlived their allocator, a bug the owner must avoid).
  ~CachingPool();
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  // Size class of a request: 0 -> 512, up to 1 MiB in 512 B steps, then 2 MiB steps.
  static size_t round_size(size_t bytes);

  // A block of at least `bytes`: the smallest cached block that fits (within 2x of the rounded
  // size), else a new raw block. When the raw allocator is out of memory, empties the cache and
  // retries once, then throws convnet::Error "CUDA out of memory allocating 1.50 GiB (in use ...,
  // cached ..., free ... of ... on <device>): try a smaller train.batch_size".
  void* allocate(size_t bytes);
  // Returns a block from allocate() to the cache. Passing any other pointer is a bug (aborts).
  void deallocate(void* ptr) noexcept;
  // Returns every cached block to the raw allocator.
  void empty_cache();
  CachingPoolStats stats() const;

 private:
  void release_cache_locked() noexcept;

  RawAllocator& raw_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_blocks_;       // size -> block, for best fit
  std::unordered_map<void*, size_t> used_blocks_;  // block -> size
  CachingPoolStats stats_;
};

}  // namespace convnet::cuda
