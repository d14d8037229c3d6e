// ReLU, GELU, dropout, fill, copy and copy_channels on the cpu backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using namespace testing;  // random inputs, poisoned outputs, close_l2, the naive:: reference

constexpr double kTol = 1e-5;

TEST(OpsElementwise, ReluHandComputedBackwardUsesOutput) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({5}, {-1, 0, 2, -3.5f, 0.5f});
  Tensor y = poisoned({5});
  be->relu_forward(x, y);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0, 0, 2, 0, 0.5f}));
  const Tensor dy = Tensor::from_vector({5}, {1, 2, 3, 4, 5});
  Tensor dx = poisoned({5});
  be->relu_backward(y, dy, dx);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{0, 0, 3, 0, 5}));
  EXPECT_EQ(naive::relu_backward(y, dy), (std::vector<double>{0, 0, 3, 0, 5}));
}

// NaN passes through ReLU (torch.relu(nan) = nan), so a NaN born in an early layer reaches the
// loss and the trainer's NaN guard fires; `x > 0 ? x : 0` would silently turn it into 0.
TEST(OpsElementwise, ReluPropagatesNanAndInfinityAsPyTorchDoes) {
  auto be = make_cpu_backend();
  constexpr float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr float inf = std::numeric_limits<float>::infinity();
  const Tensor x = Tensor::from_vector({5}, {nan, -1, inf, -inf, 2});
  Tensor y = poisoned({5});
  be->relu_forward(x, y);
  EXPECT_TRUE(std::isnan(y.f32()[0]));
  EXPECT_EQ((std::vector<float>(y.f32() + 1, y.f32() + 5)), (std::vector<float>{0, inf, 0, 2}));
  const std::vector<double> naive_y = naive::relu_forward(x);
  EXPECT_TRUE(std::isnan(naive_y[0]));
  // Backward from y: the gradient flows where y is NaN (as where y > 0), and a NaN dy flows too.
  const Tensor dy = Tensor::from_vector({5}, {1, 2, 3, 4, nan});
  Tensor dx = poisoned({5});
  be->relu_backward(y, dy, dx);
  EXPECT_EQ((std::vector<float>(dx.f32(), dx.f32() + 4)), (std::vector<float>{1, 0, 3, 0}));
  EXPECT_TRUE(std::isnan(dx.f32()[4]));
  const std::vector<double> naive_dx = naive::relu_backward(y, dy);
  EXPECT_EQ(naive_dx[0], 1.0);
  EXPECT_TRUE(std::isnan(naive_dx[4]));
}

TEST(OpsElementwise, ReluMatchesNaiveWithAliasedGradient) {
  auto be = make_cpu_backend();
  Rng rng(41);
  const Shape s{4, 33, 17, 8};
  const Tensor x = random_tensor(s, rng);
  Tensor y = poisoned(s);
  be->relu_forward(x, y);
  EXPECT_TRUE(close_l2(y, naive::relu_forward(x), 0.0));
  Tensor grad = random_tensor(s, rng);
  const std::vector<double> expected = naive::relu_backward(y, grad);
  be->relu_backward(y, grad, grad);  // dx aliases dy
  EXPECT_TRUE(close_l2(grad, expected, 0.0));
}

TEST(OpsElementwise, GeluHandComputedValues) {
  auto be = make_cpu_backend();
  const Tensor x = Tensor::from_vector({4}, {1, -1, 2, -0.5f});
  const std::vector<double> y_expected{0.8413447460685429, -0.15865525393145707, 1.9544997361036416,
                                       -0.15426876936299344};
  const std::vector<double> d_expected{1.0833154705876864, -0.08331547058768629, 1.085231801078197,
                                       0.13250487534383712};
  Tensor y = poisoned({4});
  be->gelu_forward(x, y);
  EXPECT_TRUE(close_l2(y, y_expected, 1e-6));
  Tensor dx = poisoned({4});
  be->gelu_backward(x, Tensor::full({4}, 1.0f), dx);
  EXPECT_TRUE(close_l2(dx, d_expected, 1e-6));
  EXPECT_NEAR(naive::gelu(1.0), y_expected[0], 1e-15);
  EXPECT_NEAR(naive::gelu_derivative(-0.5), d_expected[3], 1e-15);
}

TEST(OpsElementwise, GeluMatchesNaive) {
  auto be = make_cpu_backend();
  Rng rng(42);
  const Shape s{3, 29, 31, 4};
  const Tensor x = random_tensor(s, rng, -4.0f, 4.0f);
  Tensor y = poisoned(s);
  be->gelu_forward(x, y);
  EXPECT_TRUE(close_l2(y, naive::gelu_forward(x), kTol));
  Tensor grad = random_tensor(s, rng);
  const std::vector<double> expected = naive::gelu_backward(x, grad);
  be->gelu_backward(x, grad, grad);  // dx aliases dy
  EXPECT_TRUE(close_l2(grad, expected, kTol));
}

TEST(OpsElementwise, NaiveGeluDerivativeMatchesFiniteDifferences) {
  for (double x = -5.0; x <= 5.0; x += 0.37) {
    const double h = 1e-5;
    const double numeric = (naive::gelu(x + h) - naive::gelu(x - h)) / (2 * h);
    EXPECT_NEAR(naive::gelu_derivative(x), numeric, 1e-8) << "x = " << x;
  }
}

TEST(OpsElementwise, DropoutMatchesNaiveMaskAndScale) {
  auto be = make_cpu_backend();
  Rng rng(43);
  const Shape s{8, 1000};
  const Tensor x = random_tensor(s, rng);
  const float p = 0.3f;
  const uint64_t seed = 987654321;
  Tensor y = poisoned(s);
  Tensor mask(s, DType::u8);
  std::memset(mask.raw(), 7, mask.bytes());
  be->dropout_forward(x, y, mask, p, seed);
  const naive::DropoutResult ref = naive::dropout_forward(x, p, seed);
  EXPECT_EQ(std::vector<uint8_t>(mask.data<uint8_t>(), mask.data<uint8_t>() + mask.numel()), ref.mask);
  EXPECT_TRUE(close_l2(y, ref.y, kTol));
  // Backward: dy * mask / (1 - p), in place.
  Tensor grad = random_tensor(s, rng);
  std::vector<double> expected(static_cast<size_t>(grad.numel()));
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = ref.mask[i] ? grad.f32()[i] / (1.0 - p) : 0.0;
  be->dropout_backward(grad, mask, p, grad);
  EXPECT_TRUE(close_l2(grad, expected, kTol));
}

TEST(OpsElementwise, DropoutKeepRateAndSeedDependence) {
  auto be = make_cpu_backend();
  const Shape s{100000};
  const Tensor x = Tensor::full(s, 1.0f);
  Tensor y(s), mask_a(s, DType::u8), mask_b(s, DType::u8);
  be->dropout_forward(x, y, mask_a, 0.25f, 1);
  be->dropout_forward(x, y, mask_b, 0.25f, 2);
  int64_t kept = 0, differ = 0;
  for (int64_t i = 0; i < s[0]; ++i) {
    kept += mask_a.data<uint8_t>()[i];
    differ += mask_a.data<uint8_t>()[i] != mask_b.data<uint8_t>()[i];
  }
  EXPECT_NEAR(static_cast<double>(kept) / 100000.0, 0.75, 0.01);
  EXPECT_GT(differ, 20000);  // independent masks differ in ~37.5% of places
}

TEST(OpsElementwise, DropoutZeroPassesThroughAndOneDropsAll) {
  auto be = make_cpu_backend();
  Rng rng(44);
  const Shape s{3, 77};
  const Tensor x = random_tensor(s, rng);
  Tensor y = poisoned(s), mask(s, DType::u8);
  be->dropout_forward(x, y, mask, 0.0f, 5);
  EXPECT_EQ(y.to_vector(), x.to_vector());
  for (int64_t i = 0; i < mask.numel(); ++i) ASSERT_EQ(mask.data<uint8_t>()[i], 1);
  be->dropout_forward(x, y, mask, 1.0f, 5);
  for (float v : y.span()) ASSERT_EQ(v, 0.0f);
  EXPECT_THROW(be->dropout_forward(x, y, mask, 1.5f, 5), Error);
}

TEST(OpsElementwise, FillAndCopy) {
  auto be = make_cpu_backend();
  Rng rng(45);
  Tensor t = poisoned({5, 7});
  be->fill(t, 2.5f);
  for (float v : t.span()) ASSERT_EQ(v, 2.5f);
  const Tensor src = random_tensor({5, 7}, rng);
  Tensor dst = poisoned({35});  // same numel, different shape: allowed
  be->copy(dst, src);
  EXPECT_EQ(dst.to_vector(), src.to_vector());
  Tensor wrong_numel({34});
  EXPECT_THROW(be->copy(wrong_numel, src), Error);
  Tensor wrong_dtype({5, 7}, DType::i32);
  EXPECT_THROW(be->copy(wrong_dtype, src), Error);
  EXPECT_THROW(be->fill(wrong_dtype, 1.0f), Error);
  Tensor y({4});
  EXPECT_THROW(be->relu_forward(src, y), Error);
}

// copy_channels: concatenating two tensors along the channel axis and splitting them back gives
// the inputs, element by element as the NHWC index formula says; other channels stay untouched.
TEST(OpsElementwise, CopyChannelsConcatenatesAndSplits) {
  auto be = make_cpu_backend();
  Rng rng(51);
  const Tensor a = random_tensor({2, 3, 5, 4}, rng), b = random_tensor({2, 3, 5, 3}, rng);
  Tensor cat = poisoned({2, 3, 5, 8});
  be->copy_channels(a, 0, cat, 0, 4);
  be->copy_channels(b, 0, cat, 4, 3);
  for (int64_t row = 0; row < 30; ++row) {
    for (int64_t c = 0; c < 4; ++c) ASSERT_EQ(cat.f32()[row * 8 + c], a.f32()[row * 4 + c]);
    for (int64_t c = 0; c < 3; ++c) ASSERT_EQ(cat.f32()[row * 8 + 4 + c], b.f32()[row * 3 + c]);
    ASSERT_TRUE(std::isnan(cat.f32()[row * 8 + 7]));  // channel 7 was never written
  }
  Tensor back = poisoned({2, 3, 5, 3});
  be->copy_channels(cat, 4, back, 0, 3);
  EXPECT_EQ(back.to_vector(), b.to_vector());
  Tensor other_rows({2, 3, 4, 8});
  EXPECT_THROW(be->copy_channels(a, 0, other_rows, 0, 4), Error);
  EXPECT_THROW(be->copy_channels(a, 1, cat, 0, 4), Error);    // past src's channels
  EXPECT_THROW(be->copy_channels(a, 0, cat, 5, 4), Error);    // past dst's channels
  EXPECT_THROW(be->copy_channels(cat, 0, cat, 4, 4), Error);  // src == dst
}

}  // namespace
}  // namespace convnet
