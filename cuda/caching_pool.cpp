#include "cuda/caching_pool.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/base/error.h"
#include "cuda/device.h"

namespace convnet::cuda {

namespace {
// Statistics bookkeeping as a block of `size` bytes moves between the lists.
void add_in_use(CachingPoolStats& s, size_t size) {
  s.bytes_in_use += size;
  s.blocks_in_use += 1;
  s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, s.bytes_in_use);
}
void remove_in_use(CachingPoolStats& s, size_t size) {
  s.bytes_in_use -= size;
  s.blocks_in_use -= 1;
}
void add_cached(CachingPoolStats& s, size_t size) {
  s.bytes_cached += size;
  s.blocks_cached += 1;
}
void remove_cached(CachingPoolStats& s, size_t size) {
  s.bytes_cached -= size;
  s.blocks_cached -= 1;
}
}  // namespace

CachingPool::~CachingPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cache_locked();
}

size_t CachingPool::round_size(size_t bytes) {
  const size_t granularity = bytes <= kSmallLimit ? kSmallGranularity : kLargeGranularity;
  const size_t n = std::max<size_t>(bytes, 1);
  return (n + granularity - 1) / granularity * granularity;
}

void* CachingPool::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);

  // Best fit: the smallest cached block >= size, if it wastes at most half of itself.
  const auto it = free_blocks_.lower_bound(size);
  if (it != free_blocks_.end() && it->first <= 2 * size) {
    const size_t block_size = it->first;
    void* ptr = it->second;
    free_blocks_.erase(it);
    used_blocks_.emplace(ptr, block_size);
    remove_cached(stats_, block_size);
    add_in_use(stats_, block_size);
    stats_.cache_hits += 1;
    return ptr;
  }

  void* ptr = raw_.allocate(size);
  if (ptr == nullptr && !free_blocks_.empty()) {
    // Cached blocks of the wrong sizes may be what fills the device: give them back and retry.
    release_cache_locked();
    stats_.oom_retries += 1;
    ptr = raw_.allocate(size);
  }
  if (ptr == nullptr) {
    const RawAllocator::MemoryInfo mem = raw_.memory_info();
    throw Error(fmt::format(
        "CUDA out of memory allocating {} (in use {}, cached {}, free {} of {} on {}): try a smaller train.batch_size",
        format_bytes(bytes), format_bytes(stats_.bytes_in_use), format_bytes(stats_.bytes_cached),
        format_bytes(mem.free), format_bytes(mem.total), raw_.describe()));
  }
  used_blocks_.emplace(ptr, size);
  stats_.raw_allocs += 1;
  add_in_use(stats_, size);
  return ptr;
}

void CachingPool::deallocate(void* ptr) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = used_blocks_.find(ptr);
  CONVNET_CHECK(it != used_blocks_.end(), "deallocating {} which this caching allocator did not hand out", ptr);
  const size_t size = it->second;
  used_blocks_.erase(it);
  free_blocks_.emplace(size, ptr);
  remove_in_use(stats_, size);
  add_cached(stats_, size);
}

void CachingPool::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cache_locked();
}

CachingPoolStats CachingPool::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingPool::release_cache_locked() noexcept {
  for (const auto& [size, ptr] : free_blocks_) {
    raw_.free(ptr, size);
    stats_.raw_frees += 1;
  }
  free_blocks_.clear();
  stats_.bytes_cached = 0;
  stats_.blocks_cached = 0;
}

}  // namespace convnet::cuda
