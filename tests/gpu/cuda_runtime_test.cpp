// The CUDA runtime foundation on a real GPU: device queries, the caching and pinned allocators,
// host<->device copies, the fill kernel, streams/events and cuBLAS/cuDNN handles. Every test
// skips, naming the reason, when no CUDA device answers.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/check.h"
#include "cuda/common_kernels.h"
#include "cuda/device.h"
#include "cuda/device_allocator.h"
#include "cuda/device_memory.h"
#include "cuda/handles.h"
#include "cuda/op_scope.h"
#include "cuda/stream.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/test_util.h"

namespace convnet::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class CudaRuntime : public ::testing::Test {
 protected:
  void SetUp() override { CONVNET_SKIP_WITHOUT_GPU(); }
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Number of positions where the float bit patterns differ (NaN never equals a number).
size_t count_mismatches(const float* a, const float* b, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return bad;
}

TEST_F(CudaRuntime, DeviceQueryFieldsAreSane) {
  const std::vector<GpuInfo> gpus = query_gpus();
  ASSERT_EQ(static_cast<int>(gpus.size()), gpu_count());
  for (size_t i = 0; i < gpus.size(); ++i) {
    const GpuInfo& gpu = gpus[i];
    EXPECT_EQ(gpu.index, static_cast<int>(i));
    EXPECT_FALSE(gpu.name.empty());
    EXPECT_GE(gpu.sm_major, 7) << gpu.name;
    EXPECT_GE(gpu.sm_minor, 0);
    EXPECT_GT(gpu.sm_count, 0);
    EXPECT_GT(gpu.total_memory, size_t{1} << 30);
    EXPECT_GT(gpu.runtime_version, 0);
    EXPECT_GT(gpu.driver_version, 0);
    EXPECT_EQ(gpu.cudnn_version / 10000, static_cast<size_t>(CUDNN_MAJOR));
    EXPECT_EQ(gpu.cublas_version / 10000, CUBLAS_VER_MAJOR);
  }
  EXPECT_TRUE(contains(describe_gpus(), "cuda:0 " + gpus[0].name)) << describe_gpus();
  EXPECT_NO_THROW(require_gpu("the cuda backend"));
  EXPECT_TRUE(contains(cuda_build_info(), "driver supports ")) << cuda_build_info();
}

TEST_F(CudaRuntime, DeviceGuardRejectsMissingDevice) {
  const int count = gpu_count();
  try {
    DeviceGuard guard(count + 7);
    FAIL() << "DeviceGuard accepted a missing device";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "cudaErrorInvalidDevice")) << e.what();
  }
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, 0);
  EXPECT_THROW(CudaCachingAllocator allocator(count), Error);
}

TEST_F(CudaRuntime, AReportedErrorIsClearedAndNotReportedAgainByTheNextLaunch) {
  EXPECT_THROW(DeviceGuard guard(gpu_count() + 7), Error);  // cudaErrorInvalidDevice, not sticky
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess) << "the reported error is still pending";
  CudaCachingAllocator allocator(0);
  CudaStream stream;
  Tensor t(Shape{1000}, DType::f32, allocator);
  EXPECT_NO_THROW(launch_fill(static_cast<float*>(t.raw()), t.numel(), 1.0f, stream.get()));
  EXPECT_NO_THROW(stream.synchronize());
}

// Under CONVNET_SYNC_CHECK=1 a kernel that faults is reported at its own launch, naming the kernel
// and the op that launched it (in a child process: a fault ruins the CUDA context for good).
TEST(CudaSyncCheckDeathTest, NamesTheFaultingKernelAndItsOp) {
  CONVNET_SKIP_WITHOUT_GPU();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("CONVNET_SYNC_CHECK", "1", 1);
        try {
          const Tensor named({4, 4});
          const OpChecks check("fill", Device{}, "cuda");
          check.tensor(named, "t");
          const OpContext running(check);
          CudaStream stream;
          launch_fill(reinterpret_cast<float*>(uintptr_t{64}), int64_t{1} << 20, 1.0f, stream.get());
          std::fprintf(stderr, "no error reported\n");
          std::exit(0);
        } catch (const Error& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::exit(1);
        }
      },
      ::testing::ExitedWithCode(1),
      "kernel fill_kernel \\(found by CONVNET_SYNC_CHECK=1: it failed while running\\) failed: cuda.*"
      "\\(during cuda fill\\(t \\[4, 4\\]\\)\\)");
}

TEST_F(CudaRuntime, CopyRoundTripThroughCachingAllocator) {
  CudaCachingAllocator allocator(0);
  CudaStream stream;
  Rng rng(1);
  const int64_t n = 100003;
  const Tensor host = testing::random_tensor({n}, rng);
  Tensor device(Shape{n}, DType::f32, allocator);
  EXPECT_EQ(device.device(), (Device{DeviceKind::cuda, 0}));
  Tensor device_copy(Shape{n}, DType::f32, allocator);

  copy_to_device(device.raw(), host.raw(), host.bytes(), stream.get());
  copy_device_to_device(device_copy.raw(), device.raw(), host.bytes(), stream.get());
  std::vector<float> back(static_cast<size_t>(n), kNaN);
  copy_to_host(back.data(), device_copy.raw(), host.bytes(), stream.get());
  EXPECT_EQ(count_mismatches(back.data(), host.f32(), back.size()), 0u);
}

TEST_F(CudaRuntime, PinnedHostRoundTrip) {
  PinnedHostAllocator pinned;
  CudaCachingAllocator allocator(0);
  CudaStream stream;
  Rng rng(2);
  const int64_t n = 4099;
  Tensor staging(Shape{n}, DType::f32, pinned);
  EXPECT_TRUE(staging.is_cpu());
  for (float& v : staging.span()) v = rng.uniform(-3.0f, 3.0f);
  Tensor back(Shape{n}, DType::f32, pinned);
  back.fill(kNaN);
  Tensor device(Shape{n}, DType::f32, allocator);
  copy_to_device(device.raw(), staging.raw(), staging.bytes(), stream.get());
  copy_to_host(back.raw(), device.raw(), staging.bytes(), stream.get());
  EXPECT_EQ(count_mismatches(back.f32(), staging.f32(), static_cast<size_t>(n)), 0u);
}

TEST_F(CudaRuntime, FillKernelWritesEveryRequestedElement) {
  CudaCachingAllocator allocator(0);
  CudaStream stream;
  // More elements than one grid covers (4096 blocks x 256 threads), so the grid-stride loop runs.
  const size_t n = 3 * (size_t{1} << 20) + 17;
  const size_t filled = n - 5;
  auto* ptr = static_cast<float*>(allocator.allocate(n * sizeof(float)));
  std::vector<float> host(n, kNaN);
  copy_to_device(ptr, host.data(), n * sizeof(float), stream.get());
  fill_device(ptr, filled, 1.25f, stream.get());
  fill_device(ptr, 0, 7.0f, stream.get());  // no-op
  copy_to_host(host.data(), ptr, n * sizeof(float), stream.get());
  size_t wrong = 0;
  for (size_t i = 0; i < filled; ++i) wrong += host[i] != 1.25f;
  EXPECT_EQ(wrong, 0u);
  for (size_t i = filled; i < n; ++i) EXPECT_TRUE(std::isnan(host[i])) << "element " << i << " past the range";
  EXPECT_NO_THROW(CONVNET_CUDA_CHECK_LAUNCH("fill_kernel"));
  allocator.deallocate(ptr, n * sizeof(float));
}

TEST_F(CudaRuntime, CachingAllocatorStopsCallingCudaMallocOnRepeat) {
  CudaCachingAllocator allocator(0);
  const std::vector<int64_t> sizes = {1000, 70000, 4 << 20, 100, 3 << 20, 9 << 20, 513, 1 << 20};
  auto step = [&] {
    std::vector<Tensor> live;
    for (int64_t numel : sizes) live.emplace_back(Shape{numel}, DType::f32, allocator);
    for (size_t i = 0; i < 3; ++i) Tensor scratch(Shape{sizes[i] * 2}, DType::f32, allocator);
  };
  step();
  const CachingPoolStats first = allocator.stats();
  EXPECT_EQ(first.bytes_in_use, 0u);
  EXPECT_GT(first.bytes_cached, 0u);
  step();
  const CachingPoolStats second = allocator.stats();
  EXPECT_EQ(second.raw_allocs, first.raw_allocs);
  EXPECT_EQ(second.cache_hits, first.cache_hits + sizes.size() + 3);
  allocator.empty_cache();
  EXPECT_EQ(allocator.stats().bytes_cached, 0u);
  EXPECT_EQ(allocator.stats().raw_frees, first.raw_allocs);
}

TEST_F(CudaRuntime, EventTimingIsPositive) {
  CudaCachingAllocator allocator(0);
  CudaStream stream;
  const size_t n = size_t{1} << 24;
  auto* ptr = static_cast<float*>(allocator.allocate(n * sizeof(float)));
  const float ms = time_on_stream_ms(stream.get(), [&] {
    for (int i = 0; i < 20; ++i) fill_device(ptr, n, static_cast<float>(i), stream.get());
  });
  EXPECT_GT(ms, 0.0f);
  EXPECT_LT(ms, 10000.0f);
  CudaEvent done(false);
  done.record(stream.get());
  done.synchronize();
  EXPECT_TRUE(done.ready());
  float last = kNaN;
  copy_to_host(&last, ptr + n - 1, sizeof(float), stream.get());
  EXPECT_EQ(last, 19.0f);
  allocator.deallocate(ptr, n * sizeof(float));
}

TEST_F(CudaRuntime, CublasAndCudnnHandlesBindToTheStream) {
  CudaStream stream;
  CublasHandle cublas(stream.get(), MathMode::tf32);
  EXPECT_EQ(cublas.stream(), stream.get());
  cublasMath_t mode = CUBLAS_PEDANTIC_MATH;
  ASSERT_EQ(cublasGetMathMode(cublas.get(), &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_TF32_TENSOR_OP_MATH);
  cublas.set_math_mode(MathMode::fp32);
  ASSERT_EQ(cublasGetMathMode(cublas.get(), &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_DEFAULT_MATH);

  // The handle works: y = 0.5 x + y through cuBLAS on our stream.
  CudaCachingAllocator allocator(0);
  Rng rng(3);
  const int64_t n = 1001;
  const Tensor x = testing::random_tensor({n}, rng);
  const Tensor y = testing::random_tensor({n}, rng);
  Tensor dx(Shape{n}, DType::f32, allocator), dy(Shape{n}, DType::f32, allocator);
  copy_to_device(dx.raw(), x.raw(), x.bytes(), stream.get());
  copy_to_device(dy.raw(), y.raw(), y.bytes(), stream.get());
  const float alpha = 0.5f;
  CONVNET_CUBLAS_CHECK(cublasSaxpy(cublas.get(), static_cast<int>(n), &alpha, static_cast<const float*>(dx.raw()), 1,
                                   static_cast<float*>(dy.raw()), 1));
  std::vector<float> out(static_cast<size_t>(n), kNaN);
  copy_to_host(out.data(), dy.raw(), y.bytes(), stream.get());
  std::vector<double> expected(static_cast<size_t>(n));
  for (size_t i = 0; i < expected.size(); ++i)
    expected[i] = 0.5 * static_cast<double>(x.f32()[i]) + static_cast<double>(y.f32()[i]);
  EXPECT_TRUE(testing::close_l2(Tensor::from_vector({n}, out), expected, 1e-6));

  CublasHandle moved = std::move(cublas);
  EXPECT_NE(moved.get(), nullptr);
  EXPECT_EQ(cublas.get(), nullptr);

  CudnnHandle cudnn(stream.get());
  EXPECT_NE(cudnn.get(), nullptr);
  EXPECT_EQ(cudnn.stream(), stream.get());
  CudaStream other;
  cudnn.set_stream(other.get());
  EXPECT_EQ(cudnn.stream(), other.get());
}

TEST_F(CudaRuntime, AbsurdAllocationThrowsOutOfMemory) {
  CudaCachingAllocator allocator(0);
  void* small = allocator.allocate(4096);
  allocator.deallocate(small, 4096);      // something cached, so the retry path runs too
  const size_t absurd = size_t{1} << 50;  // 1 PiB
  try {
    allocator.allocate(absurd);
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(contains(message, "CUDA out of memory allocating 1048576.00 GiB (in use 0 B, cached 0 B, free "))
        << message;
    EXPECT_TRUE(contains(message, " on cuda:0 ")) << message;
    EXPECT_TRUE(contains(message, "): try a smaller train.batch_size")) << message;
  }
  EXPECT_EQ(allocator.stats().oom_retries, 1u);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the failure was cleared, not left to surface later
  void* after = allocator.allocate(4096);      // the allocator still works
  EXPECT_NE(after, nullptr);
  allocator.deallocate(after, 4096);

  void* raw = nullptr;
  try {
    CONVNET_CUDA_CHECK(cudaMalloc(&raw, absurd));
    FAIL() << "cudaMalloc of 1 PiB succeeded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "cudaMalloc(&raw, absurd) failed: cudaErrorMemoryAllocation: out of memory"))
        << e.what();
  }
  cudaGetLastError();
}

}  // namespace
}  // namespace convnet::cuda
