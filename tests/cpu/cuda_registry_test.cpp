// The GPU backends in core's registry: "cuda", "cudnn" and "cudnn_tf32" register without a GPU and
// fail to construct with a message naming the backend and the missing device; with a GPU they
// construct on cuda:0 and move data both ways. Also pins the counter-based hash the dropout
// kernels share with the cpu backend (core/base/rng.h) to independently computed values.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/base/rng.h"

#ifdef CONVNET_WITH_CUDA

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend_registry.h"
#include "core/base/error.h"
#include "cuda/device.h"
#include "cuda/gpu_backend.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/test_util.h"

namespace convnet::cuda {
namespace {

const std::vector<std::string> kGpuBackends = {"cuda", "cuda_tf32", "cudnn", "cudnn_tf32"};

TEST(CudaRegistry, RegistersAllGpuBackends) {
  register_backends();
  const std::vector<std::string> names = registered_backends();
  for (const std::string& name : kGpuBackends)
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name << " is not registered";
}

TEST(CudaRegistry, WithoutDeviceCreationNamesBackendAndReason) {
  if (gpu_count() > 0) GTEST_SKIP() << "a CUDA device is present; CudaRegistry.WithDeviceBackendsConstruct covers it";
  register_backends();
  const std::string reason = gpu_unavailable_reason();
  ASSERT_FALSE(reason.empty());
  for (const std::string& name : kGpuBackends) {
    std::string message;
    bool config_error = false;
    try {
      create_backend(name);
    } catch (const Error& e) {
      message = e.what();
      config_error = dynamic_cast<const ConfigError*>(&e) != nullptr;
    }
    ASSERT_FALSE(message.empty()) << "create_backend(\"" << name << "\") did not throw convnet::Error";
    // A ConfigError would mean "unknown backend" (exit code 2); a missing GPU is a runtime error.
    EXPECT_FALSE(config_error) << message;
    // cudnn_tf32 may report itself as "cudnn_tf32" or as the cudnn backend in tf32 mode.
    const std::string prefix = name == "cudnn_tf32" ? "the cudnn" : "the " + name + " backend";
    EXPECT_TRUE(message.starts_with(prefix)) << message;
    EXPECT_NE(message.find(" backend needs a CUDA device: "), std::string::npos) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  }
}

TEST(CudaRegistry, WithDeviceBackendsConstruct) {
  CONVNET_SKIP_WITHOUT_GPU();
  register_backends();
  for (const std::string& name : kGpuBackends) {
    std::unique_ptr<Backend> backend = create_backend(name);
    ASSERT_NE(backend, nullptr) << name;
    EXPECT_EQ(backend->device(), (Device{DeviceKind::cuda, 0})) << name;
    EXPECT_EQ(backend->allocator().device(), (Device{DeviceKind::cuda, 0})) << name;
    EXPECT_TRUE(backend->name().starts_with(name == "cuda" ? "cuda" : "cudnn")) << backend->name();

    // Host -> device -> device -> host, larger than one MiB of staging and not a multiple of it.
    Rng rng(7);
    const Tensor host = testing::random_tensor({3, 1000, 117}, rng);
    Tensor a = backend->empty(host.shape());
    Tensor b = backend->empty({static_cast<int64_t>(host.numel())});
    backend->copy(a, host);
    backend->copy(b, a);
    Tensor back = testing::poisoned(host.shape());
    backend->copy(back, b);
    EXPECT_EQ(std::memcmp(back.raw(), host.raw(), host.bytes()), 0) << name << ": round trip changed the data";
  }
}

}  // namespace
}  // namespace convnet::cuda

#else

TEST(CudaRegistry, Skipped) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

namespace convnet {
namespace {

// Expected values computed independently (Python, arbitrary-precision integers) from the
// definition: splitmix64's finalizer applied twice to seed + golden * (counter + 1).
struct HashCase {
  uint64_t seed, counter, hash;
  uint32_t top24;
};
constexpr HashCase kHashCases[] = {
    {0, 0, 0xa706dd2f4d197e6full, 10946269},
    {1, 0, 0x5e41ab087439611eull, 6177195},
    {0, 1, 0x46b73e79f0c37c00ull, 4634430},
    {42, 12345, 0x7b93693c39e91582ull, 8098665},
    {0xDEADBEEFCAFEBABEull, (uint64_t{1} << 40) + 7, 0x2907a492a2f33608ull, 2688932},
};

// The dropout kernels call hash_uniform in device code through --expt-relaxed-constexpr, which
// needs it to be a constant expression.
static_assert(hash64(42, 12345) == 0x7b93693c39e91582ull);
static_assert(hash_uniform(0, 0) == 10946269.0f / 16777216.0f);

TEST(DropoutHash, MatchesIndependentValues) {
  for (const HashCase& c : kHashCases) {
    EXPECT_EQ(hash64(c.seed, c.counter), c.hash) << c.seed << ", " << c.counter;
    EXPECT_EQ(hash_uniform(c.seed, c.counter), static_cast<float>(c.top24) / 16777216.0f)
        << c.seed << ", " << c.counter;
  }
}

TEST(DropoutHash, KeepRuleKeepsOneMinusP) {
  // keep element i iff hash_uniform(seed, i) >= p: the kept fraction is 1 - p (binomial, sd ~0.001).
  constexpr int64_t kCount = 200000;
  for (const float p : {0.1f, 0.5f, 0.8f}) {
    int64_t kept = 0;
    for (int64_t i = 0; i < kCount; ++i) kept += hash_uniform(1234, static_cast<uint64_t>(i)) >= p;
    EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(kCount), 1.0 - p, 0.006) << "p = " << p;
  }
  // p == 0 keeps everything and p == 1 nothing: hash_uniform lies in [0, 1).
  for (uint64_t i = 0; i < 1000; ++i) {
    const float u = hash_uniform(99, i);
    EXPECT_GE(u, 0.0f);
    EXPECT_LT(u, 1.0f);
  }
}

}  // namespace
}  // namespace convnet
