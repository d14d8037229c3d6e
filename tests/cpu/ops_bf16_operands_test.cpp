// bf16 operands of the conv and linear ops (Backend::conv2d_forward) and the bf16 weight copy the
// fused SGD update writes (Backend::sgd_update), on the cpu backend: a bf16 operand gives exactly
// the result of the f32 operand it was rounded from, every other precision refuses one, and the
// copy is the updated weight rounded to nearest even.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::random_tensor;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

// The three conv passes with f32 operands and with their bf16 roundings give the same bits.
TEST(Bf16Operands, ConvPassesGiveTheResultOfTheF32OperandsTheyRoundFrom) {
  auto be = make_cpu_backend(Precision::bf16);
  Rng rng(21);
  for (const int groups : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "groups " << groups);
    Conv2dParams p = testing::conv_params(2, 1, 1, 1, 1, 1);
    p.groups = groups;
    const Tensor x = random_tensor({2, 7, 6, 4}, rng), w = random_tensor({6, 3, 3, 4 / groups}, rng);
    const Tensor bias = random_tensor({6}, rng);
    const int64_t P = conv_output_size(7, 3, 2, 1, 1), Q = conv_output_size(6, 3, 1, 1, 1);
    const Tensor dy = random_tensor({2, P, Q, 6}, rng);
    const Tensor xb = testing::bf16_tensor(x), wb = testing::bf16_tensor(w), dyb = testing::bf16_tensor(dy);
    Tensor y = testing::poisoned({2, P, Q, 6}), y_b = testing::poisoned(y.shape());
    Tensor dx = testing::poisoned(x.shape()), dx_b = testing::poisoned(x.shape());
    Tensor dw = testing::poisoned(w.shape()), dw_b = testing::poisoned(w.shape());
    Tensor db = testing::poisoned({6}), db_b = testing::poisoned({6});
    be->conv2d_forward(x, w, &bias, y, p);
    be->conv2d_forward(xb, wb, &bias, y_b, p);
    be->conv2d_backward_data(dy, w, dx, p);
    be->conv2d_backward_data(dyb, wb, dx_b, p);
    be->conv2d_backward_filter(x, dy, dw, &db, p);
    be->conv2d_backward_filter(xb, dyb, dw_b, &db_b, p);
    EXPECT_TRUE(same_bits(y, y_b));
    EXPECT_TRUE(same_bits(dx, dx_b));
    EXPECT_TRUE(same_bits(dw, dw_b));
    EXPECT_TRUE(same_bits(db, db_b));
    // Mixed: only the weight in bf16, as the layers pass it.
    Tensor y_w = testing::poisoned(y.shape());
    be->conv2d_forward(x, wb, &bias, y_w, p);
    EXPECT_TRUE(same_bits(y, y_w));
    for (const float v : y.span()) ASSERT_FALSE(std::isnan(v));
  }
}

TEST(Bf16Operands, LinearPassesGiveTheResultOfTheF32OperandsTheyRoundFrom) {
  auto be = make_cpu_backend(Precision::bf16);
  Rng rng(22);
  const Tensor x = random_tensor({5, 24}, rng), w = random_tensor({7, 24}, rng), bias = random_tensor({7}, rng);
  const Tensor dy = random_tensor({5, 7}, rng);
  Tensor y = testing::poisoned({5, 7}), y_b = testing::poisoned({5, 7});
  Tensor dx = testing::poisoned(x.shape()), dx_b = testing::poisoned(x.shape());
  Tensor dw = testing::poisoned(w.shape()), dw_b = testing::poisoned(w.shape());
  Tensor db = testing::poisoned({7}), db_b = testing::poisoned({7});
  be->linear_forward(x, w, &bias, y);
  be->linear_forward(testing::bf16_tensor(x), testing::bf16_tensor(w), &bias, y_b);
  be->linear_backward(x, w, dy, &dx, dw, &db);
  be->linear_backward(testing::bf16_tensor(x), testing::bf16_tensor(w), testing::bf16_tensor(dy), &dx_b, dw_b, &db_b);
  EXPECT_TRUE(same_bits(y, y_b));
  EXPECT_TRUE(same_bits(dx, dx_b));
  EXPECT_TRUE(same_bits(dw, dw_b));
  EXPECT_TRUE(same_bits(db, db_b));
}

// fp32 and tf32 would silently compute on bf16 values (or read them as floats): refused, naming
// the operand. Outputs are f32 in every precision.
TEST(Bf16Operands, OnlyBf16PrecisionTakesThemAndOutputsStayF32) {
  Rng rng(23);
  const Tensor x = random_tensor({3, 8}, rng), w = random_tensor({4, 8}, rng);
  for (const Precision prec : {Precision::fp32, Precision::tf32}) {
    auto be = make_cpu_backend(prec);
    Tensor y({3, 4});
    const std::string error = error_of([&] { be->linear_forward(x, testing::bf16_tensor(w), nullptr, y); });
    EXPECT_NE(error.find("linear_forward: w has dtype BF16, which only bf16 precision takes"), std::string::npos)
        << error;
    Tensor dx({3, 8});
    Conv2dParams p;
    const Tensor img = random_tensor({1, 3, 3, 2}, rng), filt = random_tensor({2, 1, 1, 2}, rng);
    Tensor dimg({1, 3, 3, 2});
    EXPECT_NE(
        error_of([&] { be->conv2d_backward_data(testing::bf16_tensor(img), filt, dimg, p); }).find("dy has dtype BF16"),
        std::string::npos);
  }
  auto be = make_cpu_backend(Precision::bf16);
  Tensor y_bf16({3, 4}, DType::bf16);
  EXPECT_NE(error_of([&] { be->linear_forward(x, w, nullptr, y_bf16); }).find("y has dtype BF16, expected F32"),
            std::string::npos);
}

TEST(Bf16Operands, ToBf16RoundsToNearestEvenAndChecksItsArguments) {
  auto be = make_cpu_backend();
  const Tensor src =
      Tensor::from_vector({2, 3}, {1.0f, std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u), -2.5e-3f,
                                   std::numeric_limits<float>::quiet_NaN(), 3.0e38f});
  Tensor dst({3, 2}, DType::bf16);  // any shape of the same count
  std::memset(dst.raw(), 0xa5, dst.bytes());
  be->to_bf16(src, dst);
  const uint16_t* bits = dst.data<uint16_t>();
  EXPECT_EQ(bits[0], 0x3f80u);
  EXPECT_EQ(bits[1], 0x3f80u);  // a tie, even below: down
  EXPECT_EQ(bits[2], 0x3f82u);  // a tie, odd below: up
  EXPECT_EQ(bits[3], to_bf16_bits(-2.5e-3f));
  EXPECT_TRUE(std::isnan(from_bf16_bits(bits[4])));
  EXPECT_EQ(bits[5], to_bf16_bits(3.0e38f));
  Tensor f32_dst({6}), short_dst({5}, DType::bf16);
  EXPECT_NE(error_of([&] { be->to_bf16(src, f32_dst); }).find("to_bf16: dst has dtype F32, expected BF16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { be->to_bf16(src, short_dst); }).find("differ in element count"), std::string::npos);
}

// The bf16 nearest the float v, found by comparing the two neighbours in double (ties: the even
// one): a reference written without to_bf16_bits' carry trick. Finite v only.
uint16_t nearest_bf16_naive(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  const auto below = static_cast<uint16_t>(bits >> 16), above = static_cast<uint16_t>(below + 1);
  const double d_below = std::abs(static_cast<double>(from_bf16_bits(below)) - v);
  const double d_above = std::abs(static_cast<double>(from_bf16_bits(above)) - v);
  if (d_below != d_above) return d_below < d_above ? below : above;
  return (below & 1u) == 0 ? below : above;
}

// relu into a bf16 y (bf16 activation storage): relu(x) rounded to nearest even; backward reads
// the stored value, in place or not, and gives what the f32 backward gives on the widened y.
TEST(Bf16Operands, ReluStoresItsOutputRoundedToNearestEvenAndBackwardReadsIt) {
  auto be = make_cpu_backend(Precision::bf16);
  Rng rng(25);
  Tensor x = random_tensor({3, 5, 7}, rng, -3.0f, 3.0f);
  x.f32()[0] = std::bit_cast<float>(0x3f808000u);  // ties: to the even neighbour, below and above
  x.f32()[1] = std::bit_cast<float>(0x3f818000u);
  x.f32()[2] = std::numeric_limits<float>::quiet_NaN();  // propagates
  x.f32()[3] = 1.0e-45f;                                 // a positive denormal under bf16's smallest: stored as 0
  Tensor y({3, 5, 7}, DType::bf16);
  std::memset(y.raw(), 0xff, y.bytes());  // NaN poison
  be->relu_forward(x, y);
  const uint16_t* yb = y.data<uint16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = x.f32()[i];
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(from_bf16_bits(yb[i]))) << i;
      continue;
    }
    ASSERT_EQ(yb[i], nearest_bf16_naive(v < 0.0f ? 0.0f : v)) << i << ": x = " << v;
  }
  EXPECT_EQ(yb[0], 0x3f80u);
  EXPECT_EQ(yb[1], 0x3f82u);
  EXPECT_EQ(yb[3], 0u);

  const Tensor dy = random_tensor(x.shape(), rng);
  Tensor y_wide(x.shape());
  widen_bf16(yb, y_wide.f32(), y.numel());
  Tensor dx = testing::poisoned(x.shape()), expected = testing::poisoned(x.shape());
  be->relu_backward(y, dy, dx);
  be->relu_backward(y_wide, dy, expected);
  EXPECT_TRUE(same_bits(dx, expected));
  EXPECT_EQ(dx.f32()[3], 0.0f) << "the stored 0 masks the gradient";
  EXPECT_EQ(dx.f32()[2], dy.f32()[2]) << "NaN passes the gradient, as in f32";
  Tensor inplace = dy.clone();
  be->relu_backward(y, inplace, inplace);
  EXPECT_TRUE(same_bits(inplace, expected));

  // Only bf16 precision stores it; x and dx stay f32.
  auto f32 = make_cpu_backend(Precision::fp32);
  EXPECT_NE(error_of([&] { f32->relu_forward(x, y); }).find("relu_forward: y has dtype BF16, which only bf16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { f32->relu_backward(y, dy, dx); }).find("relu_backward: y has dtype BF16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { be->relu_forward(y, y_wide); }).find("x has dtype BF16, expected F32"), std::string::npos);
  Tensor dx_bf16(x.shape(), DType::bf16);
  EXPECT_NE(error_of([&] { be->relu_backward(y, dy, dx_bf16); }).find("dx has dtype BF16, expected F32"),
            std::string::npos);
}

// The copy is the updated parameter rounded to nearest even, momentum or not, and the update
// itself is the one without a copy.
TEST(Bf16WeightCopy, SgdWritesTheUpdatedParameterRoundedToNearestEven) {
  auto be = make_cpu_backend();
  Rng rng(24);
  for (const bool nesterov : {false, true}) {
    const Tensor param0 = random_tensor({5, 37}, rng), grad = random_tensor({5, 37}, rng);
    SgdStep step;
    step.lr = 0.05f;
    step.momentum = 0.9f;
    step.weight_decay = 5e-4f;
    step.nesterov = nesterov;
    Tensor with = param0.clone(), without = param0.clone();
    Tensor buf_with = Tensor::zeros(param0.shape()), buf_without = Tensor::zeros(param0.shape());
    Tensor copy(param0.shape(), DType::bf16);
    std::memset(copy.raw(), 0xff, copy.bytes());  // NaN bit patterns
    for (int s = 0; s < 3; ++s) {
      be->sgd_update(with, grad, buf_with, step, &copy);
      be->sgd_update(without, grad, buf_without, step, nullptr);
    }
    EXPECT_TRUE(same_bits(with, without));
    EXPECT_TRUE(same_bits(buf_with, buf_without));
    EXPECT_TRUE(same_bits(copy, testing::bf16_tensor(with)));
    EXPECT_FALSE(same_bits(with, param0));
  }
}

TEST(Bf16WeightCopy, SgdChecksTheCopy) {
  auto be = make_cpu_backend();
  Tensor param = Tensor::zeros({4}), grad = Tensor::zeros({4}), no_buf;
  Tensor f32_copy({4}), short_copy({3}, DType::bf16);
  EXPECT_NE(error_of([&] {
              be->sgd_update(param, grad, no_buf, SgdStep{}, &f32_copy);
            }).find("sgd_update: bf16_copy has dtype F32, expected BF16"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              be->sgd_update(param, grad, no_buf, SgdStep{}, &short_copy);
            }).find("bf16_copy has shape [3], expected [4]"),
            std::string::npos);
}

}  // namespace
}  // namespace convnet
