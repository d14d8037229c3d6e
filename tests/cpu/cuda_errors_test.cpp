// CUDA error messages, device discovery and build information. Needs no GPU: error codes are
// passed in directly, and device queries must degrade to "no CUDA device" without one.
#include <gtest/gtest.h>

#ifdef CONVNET_WITH_CUDA

#include <fmt/format.h>

#include <string>

#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "cuda/activity.h"
#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/handles.h"
#include "cuda/op_scope.h"

namespace convnet::cuda {
namespace {

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

::testing::AssertionResult starts_with(const std::string& text, const std::string& prefix) {
  if (text.starts_with(prefix)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not start with \"" << prefix << "\"";
}

// The message of the convnet::Error that `fn` throws; fails the test when it throws nothing.
template <class Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected convnet::Error";
  return {};
}

TEST(CudaErrorMessage, NamesFileLineCallAndError) {
  EXPECT_EQ(cuda_error_message("net.cu", 42, "cudaMalloc(&ptr, bytes)", cudaErrorMemoryAllocation),
            "net.cu:42: cudaMalloc(&ptr, bytes) failed: cudaErrorMemoryAllocation: out of memory");
  EXPECT_EQ(cuda_error_message("a.cpp", 7, "cudaSetDevice(3)", cudaErrorInvalidDevice),
            "a.cpp:7: cudaSetDevice(3) failed: cudaErrorInvalidDevice: invalid device ordinal");
}

TEST(CublasErrorMessage, UsesStatusNameAndDescription) {
  const std::string message = cublas_error_message("gemm.cpp", 9, "cublasCreate(&h)", CUBLAS_STATUS_ALLOC_FAILED);
  EXPECT_TRUE(starts_with(message, "gemm.cpp:9: cublasCreate(&h) failed: CUBLAS_STATUS_ALLOC_FAILED: "));
  EXPECT_GT(message.size(), std::string("gemm.cpp:9: cublasCreate(&h) failed: CUBLAS_STATUS_ALLOC_FAILED: ").size());
}

TEST(CublasErrorMessage, StatusNamesMatchEnumerators) {
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_SUCCESS), "CUBLAS_STATUS_SUCCESS");
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_NOT_INITIALIZED), "CUBLAS_STATUS_NOT_INITIALIZED");
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_ARCH_MISMATCH), "CUBLAS_STATUS_ARCH_MISMATCH");
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_EXECUTION_FAILED), "CUBLAS_STATUS_EXECUTION_FAILED");
  EXPECT_EQ(cublas_status_name(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED");
  EXPECT_NE(cublas_status_string(CUBLAS_STATUS_INVALID_VALUE), cublas_status_string(CUBLAS_STATUS_ALLOC_FAILED));
}

TEST(CudnnErrorMessage, NamesStatusCategoryAndNumber) {
  EXPECT_EQ(cudnn_error_message("conv.cpp", 3, "cudnnCreate(&h)", CUDNN_STATUS_BAD_PARAM),
            "conv.cpp:3: cudnnCreate(&h) failed: CUDNN_STATUS_BAD_PARAM: bad parameter (cuDNN status 2000)");
  EXPECT_EQ(cudnn_error_message("conv.cpp", 4, "run", CUDNN_STATUS_NOT_SUPPORTED_SHAPE, "no engine for 3x3"),
            "conv.cpp:4: run failed: CUDNN_STATUS_NOT_SUPPORTED_SHAPE: not supported (cuDNN status 3002); "
            "no engine for 3x3");
  EXPECT_TRUE(contains(cudnn_error_message("f", 1, "c", CUDNN_STATUS_EXECUTION_FAILED_CUBLAS), ": execution failed"));
  EXPECT_TRUE(contains(cudnn_error_message("f", 1, "c", CUDNN_STATUS_INTERNAL_ERROR), ": internal error"));
}

TEST(CheckMacros, ThrowWithSourceLocationAndEvaluateOnce) {
  int calls = 0;
  auto cuda_fails = [&] {
    ++calls;
    return cudaErrorInvalidValue;
  };
  const std::string message = error_message([&] { CONVNET_CUDA_CHECK(cuda_fails()); });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(starts_with(message, std::string(__FILE__) + ":"));
  EXPECT_TRUE(contains(message, ": cuda_fails() failed: cudaErrorInvalidValue: invalid argument"));

  auto cublas_fails = [] { return CUBLAS_STATUS_NOT_INITIALIZED; };
  EXPECT_TRUE(contains(error_message([&] { CONVNET_CUBLAS_CHECK(cublas_fails()); }),
                       ": cublas_fails() failed: CUBLAS_STATUS_NOT_INITIALIZED: "));
  auto cudnn_fails = [] { return CUDNN_STATUS_NOT_SUPPORTED; };
  EXPECT_TRUE(contains(error_message([&] { CONVNET_CUDNN_CHECK(cudnn_fails()); }),
                       ": cudnn_fails() failed: CUDNN_STATUS_NOT_SUPPORTED: not supported (cuDNN status 3000)"));

  calls = 0;
  auto succeeds = [&] {
    ++calls;
    return cudaSuccess;
  };
  EXPECT_NO_THROW(CONVNET_CUDA_CHECK(succeeds()));
  EXPECT_NO_THROW(CONVNET_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
  EXPECT_NO_THROW(CONVNET_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  EXPECT_EQ(calls, 1);
}

TEST(CheckMacros, NameTheRunningOpAndItsTensors) {
  const Tensor x({2, 8, 8, 3}), w({4, 3, 3, 3});
  const OpChecks conv("conv2d_forward", Device{}, "cuda");
  conv.tensor(x, "x");
  conv.tensor(w, "w");
  const auto fails = [] { CONVNET_CUDA_CHECK(cudaErrorInvalidValue); };
  EXPECT_FALSE(contains(error_message(fails), "(during")) << "no op is running";
  {
    const OpContext running(conv);
    const std::string message = error_message(fails);
    EXPECT_TRUE(message.ends_with(" (during cuda conv2d_forward(x [2, 8, 8, 3], w [4, 3, 3, 3]))")) << message;
    const OpChecks fill("fill", Device{}, "cuda");
    fill.tensor(w, "t");
    {
      const OpContext inner(fill);  // an op run from inside another names the innermost
      EXPECT_TRUE(contains(error_message(fails), "(during cuda fill(t [4, 3, 3, 3]))"));
      EXPECT_TRUE(contains(error_message([] { CONVNET_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); }), "(during cuda fill("));
    }
    EXPECT_TRUE(contains(error_message(fails), "(during cuda conv2d_forward("));
  }
  EXPECT_EQ(current_op_description(), "");
}

TEST(CheckMacros, LaunchChecksCountAndNameTheKernel) {
  const DeviceActivity before = device_activity();
  const OpChecks relu("relu_forward", Device{}, "cuda");
  const OpContext running(relu);
  if (gpu_count() == 0) {
    // Without a driver the runtime's last error is set: the check reports it against the kernel.
    const std::string message = error_message([] { CONVNET_CUDA_CHECK_LAUNCH("relu_kernel"); });
    EXPECT_TRUE(contains(message, ": launch of relu_kernel failed: ")) << message;
    EXPECT_TRUE(contains(message, "(during cuda relu_forward())")) << message;
  }
  EXPECT_NO_THROW(CONVNET_CUDNN_LAUNCH(CUDNN_STATUS_SUCCESS));
  EXPECT_NO_THROW(CONVNET_CUBLAS_LAUNCH(CUBLAS_STATUS_SUCCESS));
  EXPECT_THROW(CONVNET_CUDNN_LAUNCH(CUDNN_STATUS_EXECUTION_FAILED), Error);  // not counted: it did not run
  const DeviceActivity counted = device_activity() - before;
  EXPECT_EQ(counted.kernel_launches, gpu_count() == 0 ? 1 : 0);
  EXPECT_EQ(counted.library_calls, 2);
  EXPECT_EQ(counted.host_waits, 0);
}

TEST(Devices, CountNeverThrowsAndDescriptionMatchesIt) {
  int count = -1;
  EXPECT_NO_THROW(count = gpu_count());
  ASSERT_GE(count, 0);
  const std::string description = describe_gpus();
  if (count == 0) {
    EXPECT_TRUE(starts_with(description, "no CUDA device available (cudaGetDeviceCount"));
    EXPECT_TRUE(starts_with(gpu_unavailable_reason(), "cudaGetDeviceCount"));
    EXPECT_TRUE(query_gpus().empty());
    EXPECT_TRUE(starts_with(error_message([] { require_gpu("the cuda backend"); }),
                            "the cuda backend needs a CUDA device: cudaGetDeviceCount"));
  } else {
    const std::vector<GpuInfo> gpus = query_gpus();
    ASSERT_EQ(static_cast<int>(gpus.size()), count);
    EXPECT_TRUE(contains(description, "cuda:0 " + gpus[0].name));
    EXPECT_EQ(gpu_unavailable_reason(), "");
    EXPECT_NO_THROW(require_gpu("the cuda backend"));
  }
}

TEST(Devices, BuildInfoNamesHeaderAndLibraryVersions) {
  const std::string info = cuda_build_info();
  EXPECT_TRUE(starts_with(
      info, fmt::format("CUDA toolkit {}.{} (runtime ", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10)));
  EXPECT_TRUE(contains(
      info, fmt::format("cuDNN {}.{}.{} (headers) / {}.", CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, CUDNN_MAJOR)));
  EXPECT_TRUE(contains(info, fmt::format("cuBLAS {}.{}.{} (headers) / {}.", CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR,
                                         CUBLAS_VER_PATCH, CUBLAS_VER_MAJOR)));
}

TEST(FormatBytes, PicksUnitWithTwoDecimals) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(size_t{512} << 20), "512.00 MiB");
  EXPECT_EQ(format_bytes(size_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(size_t{80} << 30), "80.00 GiB");
}

TEST(MathMode, MapsToLibraryModes) {
  EXPECT_EQ(cublas_math_mode(MathMode::fp32), CUBLAS_DEFAULT_MATH);
  EXPECT_EQ(cublas_math_mode(MathMode::tf32), CUBLAS_TF32_TENSOR_OP_MATH);
  EXPECT_EQ(cudnn_math_type(MathMode::fp32), CUDNN_FMA_MATH);
  EXPECT_EQ(cudnn_math_type(MathMode::tf32), CUDNN_DEFAULT_MATH);
  EXPECT_STREQ(math_mode_name(MathMode::fp32), "fp32");
  EXPECT_STREQ(math_mode_name(MathMode::tf32), "tf32");
}

}  // namespace
}  // namespace convnet::cuda

#else

TEST(CudaErrors, NotBuilt) {
  GTEST_SKIP() << "convnet was built without CUDA";
}

#endif
