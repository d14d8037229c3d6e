// The caching pool behind CudaCachingAllocator, driven by a fake raw allocator so size classes,
// best-fit reuse, statistics and the out-of-memory path are tested without a GPU.
#include <gtest/gtest.h>

#ifdef CONVNET_WITH_CUDA

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "cuda/caching_pool.h"

namespace convnet::cuda {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Host memory with a capacity, standing in for cudaMalloc/cudaFree. Checks that every free
// matches an allocation of the same size.
class FakeDevice final : public RawAllocator {
 public:
  explicit FakeDevice(size_t capacity) : capacity_(capacity) {}
  ~FakeDevice() override {
    for (const auto& [ptr, size] : live_) std::free(ptr);
  }

  void* allocate(size_t bytes) override {
    EXPECT_GT(bytes, 0u);
    if (used_ + bytes > capacity_) {
      ++failed_allocs;
      return nullptr;
    }
    void* ptr = std::malloc(bytes);
    live_.emplace(ptr, bytes);
    used_ += bytes;
    ++allocs;
    return ptr;
  }
  void free(void* ptr, size_t bytes) noexcept override {
    const auto it = live_.find(ptr);
    EXPECT_NE(it, live_.end());
    if (it == live_.end()) return;
    EXPECT_EQ(it->second, bytes);
    used_ -= it->second;
    live_.erase(it);
    std::free(ptr);
    ++frees;
  }
  MemoryInfo memory_info() noexcept override { return {capacity_ - used_, capacity_}; }
  std::string describe() const override { return "fake:0 TestDevice"; }

  size_t used() const { return used_; }
  size_t live_blocks() const { return live_.size(); }
  size_t allocs = 0, frees = 0, failed_allocs = 0;

 private:
  size_t capacity_;
  size_t used_ = 0;
  std::unordered_map<void*, size_t> live_;
};

std::string oom_message(CachingPool& pool, size_t bytes) {
  try {
    pool.allocate(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an out-of-memory error allocating " << bytes << " bytes";
  return {};
}

TEST(CachingPool, RoundsToSizeClasses) {
  EXPECT_EQ(CachingPool::round_size(0), 512u);
  EXPECT_EQ(CachingPool::round_size(1), 512u);
  EXPECT_EQ(CachingPool::round_size(512), 512u);
  EXPECT_EQ(CachingPool::round_size(513), 1024u);
  EXPECT_EQ(CachingPool::round_size(kMiB - 1), kMiB);
  EXPECT_EQ(CachingPool::round_size(kMiB), kMiB);
  EXPECT_EQ(CachingPool::round_size(kMiB + 1), 2 * kMiB);
  EXPECT_EQ(CachingPool::round_size(2 * kMiB), 2 * kMiB);
  EXPECT_EQ(CachingPool::round_size(3 * kMiB + 7), 4 * kMiB);
}

TEST(CachingPool, ReusesFreedBlockWithoutRawAllocation) {
  FakeDevice device(64 * kMiB);
  CachingPool pool(device);
  void* a = pool.allocate(1000);
  ASSERT_NE(a, nullptr);
  std::memset(a, 0x5A, 1000);  // the block is real, writable memory of at least the request
  EXPECT_EQ(device.allocs, 1u);
  EXPECT_EQ(device.used(), 1024u);
  pool.deallocate(a);
  EXPECT_EQ(device.frees, 0u);  // kept in the cache, not returned

  void* b = pool.allocate(700);  // same 1024 B class
  EXPECT_EQ(b, a);
  EXPECT_EQ(device.allocs, 1u);
  const CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.raw_allocs, 1u);
  EXPECT_EQ(s.bytes_in_use, 1024u);
  EXPECT_EQ(s.bytes_cached, 0u);
  pool.deallocate(b);
}

TEST(CachingPool, ZeroByteRequestsGetDistinctBlocks) {
  FakeDevice device(kMiB);
  CachingPool pool(device);
  void* a = pool.allocate(0);
  void* b = pool.allocate(0);
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(pool.stats().bytes_in_use, 1024u);
  pool.deallocate(a);
  pool.deallocate(b);
}

TEST(CachingPool, BestFitTakesSmallestAdequateBlockWithinTwice) {
  FakeDevice device(64 * kMiB);
  CachingPool pool(device);
  void* b2k = pool.allocate(2048);
  void* b4k = pool.allocate(4096);
  void* b8k = pool.allocate(8192);
  void* b16k = pool.allocate(16384);
  for (void* p : {b16k, b2k, b8k, b4k}) pool.deallocate(p);
  ASSERT_EQ(device.allocs, 4u);

  EXPECT_EQ(pool.allocate(3000), b4k);  // 3072 B class: 4 KiB is the smallest cached fit
  EXPECT_EQ(pool.allocate(7000), b8k);  // 7168 B class: 8 KiB
  EXPECT_EQ(pool.allocate(1000), b2k);  // 1024 B class: 2 KiB is exactly twice, still allowed
  EXPECT_EQ(device.allocs, 4u);
  // 4096 B class: only the 16 KiB block is cached, which would waste 3/4 of it: a new block.
  void* fresh = pool.allocate(4096);
  EXPECT_NE(fresh, b16k);
  EXPECT_EQ(device.allocs, 5u);
  const CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.cache_hits, 3u);
  EXPECT_EQ(s.blocks_cached, 1u);
  EXPECT_EQ(s.bytes_cached, 16384u);
  EXPECT_EQ(s.bytes_in_use, 4096u + 8192u + 2048u + 4096u);
  EXPECT_EQ(s.blocks_in_use, 4u);
  for (void* p : {b4k, b8k, b2k, fresh}) pool.deallocate(p);
}

TEST(CachingPool, LargeRequestsUseTwoMiBClasses) {
  FakeDevice device(64 * kMiB);
  CachingPool pool(device);
  void* a = pool.allocate(3 * kMiB + 100);
  EXPECT_EQ(device.used(), 4 * kMiB);
  pool.deallocate(a);
  EXPECT_EQ(pool.allocate(3 * kMiB + 999), a);  // same 4 MiB class
  EXPECT_EQ(device.allocs, 1u);
  pool.deallocate(a);
}

TEST(CachingPool, StatsTrackUseCacheAndPeak) {
  FakeDevice device(64 * kMiB);
  CachingPool pool(device);
  Rng rng(11);
  std::vector<void*> blocks;
  size_t expected_in_use = 0;
  for (int i = 0; i < 20; ++i) {
    const size_t bytes = 1 + rng.below(3 * kMiB);
    blocks.push_back(pool.allocate(bytes));
    expected_in_use += CachingPool::round_size(bytes);
  }
  CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, expected_in_use);
  EXPECT_EQ(s.peak_bytes_in_use, expected_in_use);
  EXPECT_EQ(s.blocks_in_use, 20u);
  EXPECT_EQ(s.raw_allocs, 20u);
  EXPECT_EQ(device.used(), expected_in_use);

  for (void* p : blocks) pool.deallocate(p);
  s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.bytes_cached, expected_in_use);
  EXPECT_EQ(s.blocks_cached, 20u);
  EXPECT_EQ(s.peak_bytes_in_use, expected_in_use);
  EXPECT_EQ(s.raw_frees, 0u);
}

TEST(CachingPool, EmptyCacheReturnsOnlyFreeBlocks) {
  FakeDevice device(64 * kMiB);
  CachingPool pool(device);
  void* kept = pool.allocate(5000);
  void* a = pool.allocate(3 * kMiB);
  void* b = pool.allocate(100);
  pool.deallocate(a);
  pool.deallocate(b);
  pool.empty_cache();
  EXPECT_EQ(device.frees, 2u);
  EXPECT_EQ(device.live_blocks(), 1u);
  EXPECT_EQ(device.used(), 5120u);
  const CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_cached, 0u);
  EXPECT_EQ(s.blocks_cached, 0u);
  EXPECT_EQ(s.raw_frees, 2u);
  EXPECT_EQ(s.bytes_in_use, 5120u);
  pool.allocate(100);  // the cache is gone: a new raw block
  EXPECT_EQ(device.allocs, 4u);
  std::memset(kept, 1, 5000);
}

TEST(CachingPool, DestructorReturnsCachedBlocks) {
  FakeDevice device(64 * kMiB);
  {
    CachingPool pool(device);
    void* a = pool.allocate(kMiB);
    void* b = pool.allocate(10 * kMiB);
    pool.deallocate(b);
    pool.deallocate(a);
    EXPECT_EQ(device.live_blocks(), 2u);
  }
  EXPECT_EQ(device.live_blocks(), 0u);
  EXPECT_EQ(device.frees, 2u);
}

// A training step: parameters stay allocated; activations are allocated layer by layer, then
// freed in reverse while gradients and a per-layer workspace come and go.
void training_step(CachingPool& pool, const std::vector<size_t>& layer_bytes) {
  std::vector<void*> activations;
  for (size_t bytes : layer_bytes) {
    void* workspace = pool.allocate(bytes / 3 + 4096);
    activations.push_back(pool.allocate(bytes));
    pool.deallocate(workspace);
  }
  for (size_t i = layer_bytes.size(); i-- > 0;) {
    void* grad = pool.allocate(layer_bytes[i]);
    void* workspace = pool.allocate(layer_bytes[i] / 2 + 100);
    pool.deallocate(workspace);
    pool.deallocate(activations[i]);
    pool.deallocate(grad);
  }
}

TEST(CachingPool, RepeatedStepsStopCallingTheRawAllocator) {
  FakeDevice device(1024 * kMiB);
  CachingPool pool(device);
  Rng rng(5);
  std::vector<size_t> layer_bytes;
  for (int i = 0; i < 12; ++i) layer_bytes.push_back(1000 + rng.below(40 * kMiB));
  std::vector<void*> params;
  for (size_t bytes : layer_bytes) params.push_back(pool.allocate(bytes / 10 + 1));

  training_step(pool, layer_bytes);
  const size_t after_first = device.allocs;
  EXPECT_GT(after_first, params.size());
  const size_t hits_after_first = pool.stats().cache_hits;
  training_step(pool, layer_bytes);
  training_step(pool, layer_bytes);
  EXPECT_EQ(device.allocs, after_first);
  EXPECT_EQ(device.frees, 0u);
  EXPECT_EQ(pool.stats().cache_hits, hits_after_first + 2 * 4 * layer_bytes.size());
  for (void* p : params) pool.deallocate(p);
}

TEST(CachingPool, OutOfMemoryEmptiesCacheAndRetries) {
  FakeDevice device(10 * kMiB);
  CachingPool pool(device);
  void* a = pool.allocate(4 * kMiB);
  void* b = pool.allocate(4 * kMiB);
  pool.deallocate(a);
  pool.deallocate(b);
  // 6 MiB does not fit next to the 8 MiB cache and no cached block is large enough: the pool
  // must return the cache to the device and succeed on the retry.
  void* c = pool.allocate(6 * kMiB);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(device.failed_allocs, 1u);
  EXPECT_EQ(device.frees, 2u);
  CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.oom_retries, 1u);
  EXPECT_EQ(s.bytes_cached, 0u);
  EXPECT_EQ(s.bytes_in_use, 6 * kMiB);

  // Nothing cached: a request that cannot fit fails at once with the full explanation.
  const std::string message = oom_message(pool, 5 * kMiB);
  EXPECT_EQ(message,
            "CUDA out of memory allocating 5.00 MiB (in use 6.00 MiB, cached 0 B, free 4.00 MiB of 10.00 MiB on "
            "fake:0 TestDevice): try a smaller train.batch_size");
  EXPECT_EQ(pool.stats().oom_retries, 1u);
  EXPECT_EQ(pool.stats().bytes_in_use, 6 * kMiB);  // the failure left the pool as it was
  pool.deallocate(c);
}

TEST(CachingPool, OutOfMemoryAfterRetryThrows) {
  FakeDevice device(10 * kMiB);
  CachingPool pool(device);
  void* in_use = pool.allocate(6 * kMiB);
  void* cached = pool.allocate(2 * kMiB);
  pool.deallocate(cached);
  const std::string message = oom_message(pool, 7 * kMiB + 5);
  EXPECT_NE(message.find("CUDA out of memory allocating 7.00 MiB"), std::string::npos) << message;
  EXPECT_NE(message.find("in use 6.00 MiB, cached 0 B, free 4.00 MiB of 10.00 MiB"), std::string::npos) << message;
  EXPECT_NE(message.find("train.batch_size"), std::string::npos) << message;
  EXPECT_EQ(device.failed_allocs, 2u);  // the first try and the retry after emptying the cache
  EXPECT_EQ(pool.stats().oom_retries, 1u);
  EXPECT_EQ(device.live_blocks(), 1u);
  pool.deallocate(in_use);
}

TEST(CachingPool, ConcurrentUseNeverHandsOutABlockTwice) {
  FakeDevice device(1024 * kMiB);
  CachingPool pool(device);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> corrupted(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&pool, &corrupted, t] {
      Rng rng(static_cast<uint64_t>(100 + t));
      const auto tag = static_cast<unsigned char>(t + 1);
      for (int i = 0; i < 2000; ++i) {
        const size_t bytes = 1 + rng.below(8192);
        auto* p = static_cast<unsigned char*>(pool.allocate(bytes));
        std::memset(p, tag, bytes);
        std::this_thread::yield();
        for (size_t j = 0; j < bytes; j += 97) corrupted[static_cast<size_t>(t)] += p[j] != tag;
        pool.deallocate(p);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(corrupted[static_cast<size_t>(t)], 0) << "thread " << t;
  const CachingPoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.cache_hits + s.raw_allocs, static_cast<size_t>(kThreads) * 2000u);
  EXPECT_LE(s.raw_allocs, 200u);  // 4 threads hold at most 4 blocks at once; classes are few
}

TEST(CachingPoolDeathTest, DeallocatingAForeignPointerAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FakeDevice device(kMiB);
  CachingPool pool(device);
  int not_from_pool = 0;
  EXPECT_DEATH(pool.deallocate(&not_from_pool), "did not hand out");
}

}  // namespace
}  // namespace convnet::cuda

#else

TEST(CudaAllocator, NotBuilt) {
  GTEST_SKIP() << "convnet was built without CUDA";
}

#endif
