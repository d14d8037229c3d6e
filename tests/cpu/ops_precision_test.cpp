// train.precision on the cpu backend, the reference the tensor-core kernels are checked against:
// the roundings themselves (core/base/precision.h), then conv and linear ops in tf32 and bf16
// against float64 on operands rounded the same way, with bf16 outputs stored as bf16 values.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

float bits(uint32_t b) {
  return std::bit_cast<float>(b);
}

TEST(PrecisionRounding, Tf32RoundsToNearestWithTiesAwayFromZero) {
  EXPECT_EQ(round_to_tf32(1.0f), 1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(round_to_tf32(bits(0x3f800fffu))), 0x3f800000u);  // below half: down
  EXPECT_EQ(std::bit_cast<uint32_t>(round_to_tf32(bits(0x3f801000u))), 0x3f802000u);  // tie: away
  EXPECT_EQ(std::bit_cast<uint32_t>(round_to_tf32(bits(0xbf801000u))), 0xbf802000u);  // negative tie: away
  EXPECT_EQ(std::bit_cast<uint32_t>(round_to_tf32(bits(0x3f803000u))), 0x3f804000u);  // odd tie: away too
  EXPECT_TRUE(std::isinf(round_to_tf32(std::numeric_limits<float>::max())));
  EXPECT_TRUE(std::isnan(round_to_tf32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(round_to_tf32(-std::numeric_limits<float>::infinity()), -std::numeric_limits<float>::infinity());
}

TEST(PrecisionRounding, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16_bits(1.0f), 0x3f80u);
  EXPECT_EQ(to_bf16_bits(bits(0x3f808000u)), 0x3f80u);  // tie, even below: down
  EXPECT_EQ(to_bf16_bits(bits(0x3f818000u)), 0x3f82u);  // tie, odd below: up
  EXPECT_EQ(to_bf16_bits(bits(0x3f808001u)), 0x3f81u);  // above half: up
  EXPECT_EQ(to_bf16_bits(bits(0xbf818000u)), 0xbf82u);
  EXPECT_EQ(to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80u);  // overflow: infinity
  EXPECT_TRUE(std::isnan(from_bf16_bits(to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(from_bf16_bits(to_bf16_bits(bits(0x7f800001u)))));  // a NaN whose top bits are Inf's
  EXPECT_EQ(from_bf16_bits(0xc0a0u), -5.0f);
}

TEST(PrecisionRounding, ParsesTheThreeNamesAndRejectsOthers) {
  EXPECT_EQ(parse_precision("bf16", "p"), Precision::bf16);
  EXPECT_EQ(parse_precision("tf32", "p"), Precision::tf32);
  EXPECT_EQ(parse_precision("fp32", "p"), Precision::fp32);
  EXPECT_THROW(parse_precision("fp16", "p"), ConfigError);
}

Tensor rounded(const Tensor& t, Precision p) {
  Tensor r = t.clone();
  round_operand(r.f32(), r.f32(), r.numel(), p);
  return r;
}

// got within (reduction + 8) * 2^-23 * sum |a*b| of ref, plus 2^-8 |ref| when stored as bf16.
void expect_close(const char* what, const Tensor& got, const std::vector<double>& ref, const std::vector<double>& mag,
                  int64_t reduction, bool bf16_output) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), ref.size());
  const double u = std::ldexp(1.0, -23);
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double v = got.f32()[i];
    const double bound =
        static_cast<double>(reduction + 8) * u * mag[i] + (bf16_output ? std::ldexp(std::fabs(ref[i]), -8) : 0) + 1e-30;
    if (!(std::fabs(v - ref[i]) <= bound) && ++bad <= 3)
      ADD_FAILURE() << what << "[" << i << "] = " << v << ", expected " << ref[i];
    if (bf16_output) {
      EXPECT_EQ(v, round_to_bf16(static_cast<float>(v))) << what << "[" << i << "] is not a bf16 value";
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

Tensor absolute(const Tensor& t) {
  Tensor a = t.clone();
  for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = std::fabs(a.f32()[i]);
  return a;
}

class CpuPrecision : public ::testing::TestWithParam<Precision> {};

// Ungrouped, grouped and depthwise (the direct loops of core/cpu/conv_depthwise.h).
TEST_P(CpuPrecision, ConvPassesComputeOnRoundedOperands) {
  const Precision prec = GetParam();
  const bool bf16 = prec == Precision::bf16;
  auto be = make_cpu_backend();
  be->set_precision(prec);
  Rng rng(11);
  for (const int groups : {1, 3, 6}) {
    SCOPED_TRACE(fmt::format("groups {}", groups));
    Conv2dParams p = testing::conv_params(2, 1, 1, 1, 1, 2);
    p.groups = groups;
    const int64_t gc = 6 / groups;  // C = K = 6
    const Tensor x = testing::random_tensor({2, 7, 9, 6}, rng), w = testing::random_tensor({6, 3, 3, gc}, rng);
    const Tensor bias = testing::random_tensor({6}, rng);
    const int64_t P = conv_output_size(7, 3, 2, 1, 1), Q = conv_output_size(9, 3, 1, 1, 2);
    const Tensor dy = testing::random_tensor({2, P, Q, 6}, rng);
    const Tensor xr = rounded(x, prec), wr = rounded(w, prec), dyr = rounded(dy, prec);

    Tensor y({2, P, Q, 6}), dx({2, 7, 9, 6}), dw({6, 3, 3, gc}), db({6});
    be->conv2d_forward(x, w, &bias, y, p);
    be->conv2d_backward_data(dy, w, dx, p);
    be->conv2d_backward_filter(x, dy, dw, &db, p);
    const Tensor abs_bias = absolute(bias);
    const int64_t reduction = 9 * gc;  // forward R*S*C/groups; backward data R*S*K/groups, the same here
    expect_close("y", y, testing::naive::conv2d_forward(xr, wr, &bias, p),
                 testing::naive::conv2d_forward(absolute(xr), absolute(wr), &abs_bias, p), reduction, bf16);
    expect_close("dx", dx, testing::naive::conv2d_backward_data(dyr, wr, x.shape(), p),
                 testing::naive::conv2d_backward_data(absolute(dyr), absolute(wr), x.shape(), p), reduction, bf16);
    expect_close("dw", dw, testing::naive::conv2d_backward_filter(xr, dyr, w.shape(), p),
                 testing::naive::conv2d_backward_filter(absolute(xr), absolute(dyr), w.shape(), p), dy.numel() / 6,
                 false);
    // dbias sums what the GPU kernels read: the bf16 dy in bf16, the fp32 dy in tf32.
    const Tensor& bias_source = bf16 ? dyr : dy;
    expect_close("dbias", db, testing::naive::sum_over_last_dim(bias_source),
                 testing::naive::sum_over_last_dim(absolute(bias_source)), dy.numel() / 6, false);
    // And the rounding is real: the same op in fp32 gives other bits.
    Tensor y32({2, P, Q, 6});
    make_cpu_backend()->conv2d_forward(x, w, &bias, y32, p);
    EXPECT_NE(std::memcmp(y.raw(), y32.raw(), y.bytes()), 0);
  }
}

TEST_P(CpuPrecision, LinearPassesComputeOnRoundedOperands) {
  const Precision prec = GetParam();
  const bool bf16 = prec == Precision::bf16;
  auto be = make_cpu_backend();
  be->set_precision(prec);
  Rng rng(12);
  const Tensor x = testing::random_tensor({5, 40}, rng), w = testing::random_tensor({7, 40}, rng);
  const Tensor dy = testing::random_tensor({5, 7}, rng);
  const Tensor xr = rounded(x, prec), wr = rounded(w, prec), dyr = rounded(dy, prec);
  Tensor y({5, 7}), dx({5, 40}), dw({7, 40}), db({7});
  be->linear_forward(x, w, nullptr, y);
  be->linear_backward(x, w, dy, &dx, dw, &db);
  expect_close("y", y, testing::naive::linear_forward(xr, wr, nullptr),
               testing::naive::linear_forward(absolute(xr), absolute(wr), nullptr), 40, bf16);
  const auto grads = testing::naive::linear_backward(xr, wr, dyr);
  const auto mags = testing::naive::linear_backward(absolute(xr), absolute(wr), absolute(dyr));
  expect_close("dx", dx, grads.dx, mags.dx, 7, bf16);
  expect_close("dw", dw, grads.dw, mags.dw, 5, false);
  const Tensor& bias_source = bf16 ? dyr : dy;
  expect_close("dbias", db, testing::naive::sum_over_last_dim(bias_source),
               testing::naive::sum_over_last_dim(absolute(bias_source)), 5, false);
}

INSTANTIATE_TEST_SUITE_P(Precisions, CpuPrecision, ::testing::Values(Precision::tf32, Precision::bf16),
                         [](const auto& param_info) { return std::string(precision_name(param_info.param)); });

TEST(CpuPrecision, Fp32IsTheDefaultAndLeavesOperandsAlone) {
  auto be = make_cpu_backend();
  EXPECT_EQ(be->precision(), Precision::fp32);
  Rng rng(13);
  const Tensor x = testing::random_tensor({3, 10}, rng), w = testing::random_tensor({4, 10}, rng);
  Tensor y({3, 4});
  be->linear_forward(x, w, nullptr, y);
  const auto ref = testing::naive::linear_forward(x, w, nullptr);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y.f32()[i], ref[i], 1e-5);
}

}  // namespace
}  // namespace convnet
