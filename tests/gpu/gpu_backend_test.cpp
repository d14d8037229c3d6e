// The memory and measurement side of the GPU backends through the Backend interface: copies in
// every direction (empty and odd sizes, every dtype, growing and shrinking staging buffers), the
// copy stream's uploads and their hand-over, two backends on one device sharing its compute
// stream, fill, argument errors naming the op, activity counts, CUDA-event timing and the
// device's peak rates.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "cuda/device.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::bitwise_equal;
using testing::contains;
using testing::error_of;

// Element counts around the edges a copy or fill kernel may get wrong: empty, one element, not a
// multiple of 4 (vector width), just past a 4 KiB page and a grid's worth of threads, several MiB.
const std::vector<int64_t>& odd_sizes() {
  static const std::vector<int64_t> sizes = {
      0, 1, 3, 5, 1023, 1025, 4097, 65537, (int64_t{1} << 20) + 5, 3 * (int64_t{1} << 20) + 1};
  return sizes;
}

// A host tensor of `dtype` with random contents (f32 uniform, i32 any value, u8 any byte).
Tensor random_host(int64_t n, DType dtype, Rng& rng) {
  if (dtype == DType::f32) return testing::random_tensor({n}, rng, -3.0f, 3.0f);
  Tensor t({n}, dtype);
  auto* bytes = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.bytes(); ++i) bytes[i] = static_cast<unsigned char>(rng.below(256));
  return t;
}

// A host tensor of `dtype` with every byte 0xA5, to be overwritten by a download.
Tensor poisoned_host(const Shape& shape, DType dtype) {
  Tensor t(shape, dtype);
  if (t.bytes() > 0) std::memset(t.raw(), 0xA5, t.bytes());
  return t;
}

class GpuBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    CONVNET_SKIP_WITHOUT_GPU();
    gpu_ = testing::make_gpu_backend(GetParam());
  }
  Backend& gpu() { return *gpu_; }

 private:
  std::unique_ptr<Backend> gpu_;
};

TEST_P(GpuBackendTest, IdentifiesItsDevice) {
  EXPECT_EQ(gpu().name(), GetParam());
  EXPECT_EQ(gpu().device(), (Device{DeviceKind::cuda, 0}));
  EXPECT_EQ(gpu().allocator().device(), (Device{DeviceKind::cuda, 0}));
  const Tensor t = gpu().empty({3, 5});
  EXPECT_EQ(t.device(), (Device{DeviceKind::cuda, 0}));
  EXPECT_FALSE(t.is_cpu());
}

TEST_P(GpuBackendTest, HostDeviceHostRoundTripsEveryDtypeAndSize) {
  Rng rng(1);
  for (const DType dtype : {DType::f32, DType::i32, DType::u8}) {
    // Ascending then descending sizes: the staging buffers grow, then get reused while larger.
    std::vector<int64_t> sizes = odd_sizes();
    sizes.insert(sizes.end(), odd_sizes().rbegin(), odd_sizes().rend());
    for (const int64_t n : sizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " x " + std::to_string(n));
      const Tensor host = random_host(n, dtype, rng);
      Tensor device = gpu().empty({n}, dtype);
      gpu().copy(device, host);
      Tensor back = poisoned_host({n}, dtype);
      gpu().copy(back, device);
      EXPECT_TRUE(bitwise_equal(back, host));
    }
  }
}

TEST_P(GpuBackendTest, CopyAsyncIsOrderedWithComputeWorkOnBothSides) {
  // The upload runs on the copy stream: it must start after the fill queued before it (which
  // writes the same buffer) and finish before the copy queued after await_uploads (which reads it).
  Rng rng(7);
  for (const int64_t n : odd_sizes()) {
    const Tensor a = random_host(n, DType::f32, rng), b = random_host(n, DType::f32, rng);
    Tensor dst = gpu().empty({n}), out = gpu().empty({n});
    gpu().fill(dst, std::nanf(""));
    gpu().copy_async(dst, a);
    gpu().await_uploads();
    gpu().copy(out, dst);      // device -> device, queued on the compute stream
    gpu().copy_async(dst, b);  // reuses the pinned staging buffer while `a` may be in flight
    gpu().await_uploads();
    Tensor host_a = poisoned_host({n}, DType::f32), host_b = poisoned_host({n}, DType::f32);
    gpu().copy(host_a, out);
    gpu().copy(host_b, dst);
    EXPECT_TRUE(bitwise_equal(host_a, a)) << "n = " << n;
    EXPECT_TRUE(bitwise_equal(host_b, b)) << "n = " << n;
  }
}

TEST_P(GpuBackendTest, CopyAsyncHoldsItsTargetUntilAwaited) {
  // A target released before await_uploads must not be handed to compute work while the upload
  // may still write it: the tensor allocated right after it, filled on the compute stream, keeps
  // its value.
  const int64_t n = int64_t{1} << 24;  // 64 MiB: the upload takes milliseconds
  Rng rng(9);
  const Tensor big = random_host(n, DType::f32, rng);
  for (int round = 0; round < 3; ++round) {
    {
      Tensor dst = gpu().empty({n});
      gpu().copy_async(dst, big);
    }  // released while in flight
    Tensor other = gpu().empty({n});
    gpu().fill(other, 0.25f);
    gpu().await_uploads();
    EXPECT_TRUE(bitwise_equal(testing::to_host(gpu(), other), Tensor::full({n}, 0.25f))) << "round " << round;
  }
}

// Two backends on one device queue on the same compute stream, so a tensor one writes is read by
// the other in order, with no synchronize() between them and no hand-over events.
TEST_P(GpuBackendTest, BackendsOnOneDeviceShareItsComputeStream) {
  std::unique_ptr<Backend> other = testing::make_gpu_backend(GetParam() == "cuda" ? "cudnn" : "cuda");
  EXPECT_EQ(dynamic_cast<cuda::GpuBackend&>(gpu()).stream(), dynamic_cast<cuda::GpuBackend&>(*other).stream());
}

TEST_P(GpuBackendTest, CopiesTensorsOfAnotherBackendOnTheSameDevice) {
  std::unique_ptr<Backend> other = testing::make_gpu_backend(GetParam() == "cuda" ? "cudnn" : "cuda");
  Rng rng(3);
  const int64_t n = int64_t{1} << 24;  // large enough that the producer is still busy when the consumer is queued
  const Tensor host = random_host(n, DType::f32, rng);
  for (int round = 0; round < 3; ++round) {
    Tensor theirs = other->empty({n});
    for (int i = 0; i < 10; ++i) other->fill(theirs, static_cast<float>(i));  // a long queue on their side
    other->copy(theirs, testing::to_device(*other, host));
    Tensor mine = testing::poisoned_device(gpu(), {n});
    gpu().copy(mine, theirs);  // no synchronize(): the shared stream orders it
    Tensor back_to_theirs = testing::poisoned_device(*other, {n});
    other->copy(back_to_theirs, mine);
    gpu().fill(mine, -1.0f);  // after their read: must not reach back_to_theirs
    EXPECT_TRUE(bitwise_equal(testing::to_host(*other, back_to_theirs), host)) << "round " << round;
  }
}

TEST_P(GpuBackendTest, ActivityCountsWhatEachOpQueuesAndWaitsFor) {
  Tensor t = gpu().empty({1000}), u = gpu().empty({1000});
  const Tensor host = Tensor::full({1000}, 2.0f);
  gpu().synchronize();
  const DeviceActivity start = gpu().activity();
  gpu().fill(t, 1.0f);
  gpu().copy(u, host);
  gpu().copy(t, u);
  Tensor back({1000});
  gpu().copy(back, t);
  const DeviceActivity d = gpu().activity() - start;
  EXPECT_EQ(d.kernel_launches, 1);
  EXPECT_EQ(d.host_to_device, 1);
  EXPECT_EQ(d.device_to_device, 1);
  EXPECT_EQ(d.device_to_host, 1);
  EXPECT_GE(d.host_waits, 1);  // the download waits for the stream
  EXPECT_EQ(back.f32()[999], 2.0f);
}

TEST_P(GpuBackendTest, DeviceToDeviceCopiesAcrossShapesWithTheSameNumel) {
  Rng rng(2);
  for (const int64_t n : odd_sizes()) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const Tensor host = random_host(n, DType::f32, rng);
    const Tensor source = testing::to_device(gpu(), host);
    Tensor same = testing::poisoned_device(gpu(), {n});
    gpu().copy(same, source);
    EXPECT_TRUE(bitwise_equal(testing::to_host(gpu(), same), host));
    // copy only needs equal element counts: [n] -> [1, n, 1].
    Tensor other_shape = testing::poisoned_device(gpu(), {1, n, 1});
    gpu().copy(other_shape, source);
    EXPECT_TRUE(bitwise_equal(testing::to_host(gpu(), other_shape).reshaped({n}), host));
  }
  // Later copies on the stream see earlier ones: a chain of device copies ends with the first value.
  const Tensor host = random_host(100003, DType::f32, rng);
  Tensor a = testing::to_device(gpu(), host), b = gpu().empty({100003}), c = gpu().empty({100003});
  gpu().copy(b, a);
  gpu().copy(c, b);
  gpu().fill(a, 0.5f);
  gpu().fill(b, -0.5f);
  EXPECT_TRUE(bitwise_equal(testing::to_host(gpu(), c), host));
}

TEST_P(GpuBackendTest, FillWritesEveryElement) {
  for (const int64_t n : odd_sizes()) {
    SCOPED_TRACE("n = " + std::to_string(n));
    Tensor device = gpu().empty({n});
    for (const float value : {1.25f, -7.5e-3f, 3.0e38f}) {
      gpu().fill(device, value);
      const Tensor host = testing::to_host(gpu(), device);
      EXPECT_TRUE(bitwise_equal(host, Tensor::full({n}, value))) << "value " << value;
    }
    gpu().fill(device, testing::kPoison);
    int64_t not_nan = 0;
    for (const float v : testing::to_host(gpu(), device).span()) not_nan += !std::isnan(v);
    EXPECT_EQ(not_nan, 0);
  }
}

// Mismatched arguments throw convnet::Error naming the op before anything is launched, and the
// backend keeps working afterwards.
TEST_P(GpuBackendTest, MismatchedArgumentsThrowNamingTheOp) {
  Backend& b = gpu();
  Tensor f10 = testing::poisoned_device(b, {10}), f11 = testing::poisoned_device(b, {11});
  Tensor host_f11({11}), host_i10({10}, DType::i32);
  Tensor i10 = b.empty({10}, DType::i32);
  // (op name, what the call threw)
  std::vector<std::pair<std::string, std::string>> errors = {
      {"copy", error_of([&] { b.copy(f10, f11); })},
      {"copy", error_of([&] { b.copy(f10, host_f11); })},
      {"copy", error_of([&] { b.copy(host_f11, f10); })},
      {"copy", error_of([&] { b.copy(f10, host_i10); })},
      {"copy", error_of([&] { b.copy(host_i10, f10); })},
      {"fill", error_of([&] { b.fill(i10, 1.0f); })},
      {"relu_forward", error_of([&] { b.relu_forward(f10, f11); })},
      {"gelu_backward", error_of([&] { b.gelu_backward(f10, f11, f10); })},
  };
  {  // conv2d_forward: y has the wrong spatial size
    Tensor x = b.empty({2, 8, 8, 3}), w = b.empty({4, 3, 3, 3}), y = b.empty({2, 8, 8, 4});
    errors.emplace_back("conv2d_forward", error_of([&] { b.conv2d_forward(x, w, nullptr, y, Conv2dParams{}); }));
    Tensor w_bad_c = b.empty({4, 3, 3, 5}), y_ok = b.empty({2, 6, 6, 4});
    errors.emplace_back("conv2d_forward",
                        error_of([&] { b.conv2d_forward(x, w_bad_c, nullptr, y_ok, Conv2dParams{}); }));
    Tensor dx_bad = b.empty({2, 8, 8, 5});
    errors.emplace_back("conv2d_backward_data",
                        error_of([&] { b.conv2d_backward_data(y_ok, w, dx_bad, Conv2dParams{}); }));
    Tensor dw_bad = b.empty({4, 3, 3, 2});
    errors.emplace_back("conv2d_backward_filter",
                        error_of([&] { b.conv2d_backward_filter(x, y_ok, dw_bad, nullptr, Conv2dParams{}); }));
  }
  {  // max pooling with an f32 argmax
    Tensor x = b.empty({1, 4, 4, 2}), y = b.empty({1, 2, 2, 2}), argmax = b.empty({1, 2, 2, 2});
    errors.emplace_back("max_pool2d_forward", error_of([&] { b.max_pool2d_forward(x, y, argmax, Pool2dParams{}); }));
  }
  {  // batchnorm with gamma of the wrong size
    Tensor x = b.empty({4, 6}), gamma = b.empty({5}), beta = b.empty({6}), y = b.empty({4, 6});
    Tensor mean = b.empty({6}), invstd = b.empty({6}), rm = b.empty({6}), rv = b.empty({6});
    errors.emplace_back("batch_norm_forward_train", error_of([&] {
                          b.batch_norm_forward_train(x, gamma, beta, y, mean, invstd, rm, rv, 0.1f, 1e-5f);
                        }));
  }
  {  // dropout with an f32 mask
    Tensor x = b.empty({10}), y = b.empty({10}), mask = b.empty({10});
    errors.emplace_back("dropout_forward", error_of([&] { b.dropout_forward(x, y, mask, 0.5f, 1); }));
  }
  {  // linear with mismatched inner dimensions
    Tensor x = b.empty({3, 7}), w = b.empty({5, 8}), y = b.empty({3, 5});
    errors.emplace_back("linear_forward", error_of([&] { b.linear_forward(x, w, nullptr, y); }));
  }
  {  // softmax cross-entropy with f32 labels
    Tensor logits = b.empty({4, 10}), labels = b.empty({4}), loss = b.empty({1}), probs = b.empty({4, 10});
    errors.emplace_back("softmax_cross_entropy_forward",
                        error_of([&] { b.softmax_cross_entropy_forward(logits, labels, 0.0f, loss, probs); }));
  }
  {  // sgd with a gradient of another size
    Tensor param = b.empty({10}), grad = b.empty({11}), buf = b.empty({10});
    errors.emplace_back("sgd_update", error_of([&] { b.sgd_update(param, grad, buf, SgdStep{}, nullptr); }));
  }
  for (const auto& [op, message] : errors) EXPECT_TRUE(contains(message, op)) << op << ": got '" << message << "'";

  Rng rng(4);
  const Tensor host = random_host(1001, DType::f32, rng);
  EXPECT_TRUE(bitwise_equal(testing::to_host(b, testing::to_device(b, host)), host)) << "backend broken after errors";
}

TEST_P(GpuBackendTest, ElapsedMsTimesTheQueuedWork) {
  const int64_t n = int64_t{1} << 24;  // 64 MiB per fill
  Tensor t = gpu().empty({n});
  gpu().fill(t, 0.0f);
  gpu().synchronize();
  const double ms = gpu().elapsed_ms([&] {
    for (int i = 1; i <= 20; ++i) gpu().fill(t, static_cast<float>(i));
  });
  EXPECT_GT(ms, 0.0);
  EXPECT_LT(ms, 10000.0);
  const double empty_ms = gpu().elapsed_ms([] {});
  EXPECT_GE(empty_ms, 0.0);
  EXPECT_LT(empty_ms, ms) << "20 fills of 64 MiB took no longer than nothing";
  EXPECT_NO_THROW(gpu().flush_caches());
  const Tensor host = testing::to_host(gpu(), t);
  EXPECT_EQ(host.f32()[n - 1], 20.0f);
  EXPECT_EQ(host.f32()[0], 20.0f);
}

TEST_P(GpuBackendTest, PeakRatesAreKnown) {
  const double gflops = gpu().peak_gflops(), gbytes = gpu().peak_gbytes_per_sec();
  EXPECT_GT(gflops, 0.0);
  EXPECT_GT(gbytes, 0.0);
  const std::string name = cuda::query_gpus().at(0).name;
  if (contains(name, "H100") || contains(name, "H200")) {
    // fp32 FMA peak: 51 (PCIe) to 67 (SXM) TFLOP/s; HBM: 2.0 to 4.8 TB/s.
    EXPECT_GT(gflops, 30000.0) << name;
    EXPECT_LT(gflops, 120000.0) << name;
    EXPECT_GT(gbytes, 1000.0) << name;
    EXPECT_LT(gbytes, 6000.0) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuBackendTest, ::testing::Values("cuda", "cudnn"), testing::backend_test_name);

}  // namespace
}  // namespace convnet
