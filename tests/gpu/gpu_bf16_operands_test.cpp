// bf16 operands on the GPU backends in bf16 precision (Backend::conv2d_forward): a bf16 x, w or dy
// gives the bits the f32 tensor holding the same values gives, on v4 BF16 (groups 1), the fp32
// kernels of narrow groups (cuda widens the operand) and cuDNN; and the bf16 weight copy written
// by the fused SGD update is the updated weight rounded to nearest even.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

// t rounded to bf16 (to nearest even), as f32 values (testing::bf16_tensor: as bf16 storage).
Tensor rounded_f32(const Tensor& t) {
  Tensor out = t.clone();
  round_operand(out.f32(), out.f32(), out.numel(), Precision::bf16);
  return out;
}

class GpuBf16Operands : public testing::GpuVsCpuTest {
 protected:
  void SetUp() override {
    testing::GpuVsCpuTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    gpu().set_precision(Precision::bf16);
  }
  // The device f32 tensor of t's bf16 values, and its bf16 storage.
  Tensor f32_values(const Tensor& t) { return up(rounded_f32(t)); }
  Tensor bf16_values(const Tensor& t) { return up(testing::bf16_tensor(t)); }
  // Both outputs were NaN-poisoned: equal bits prove something only when every element is written.
  ::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
    const Tensor host = down(b);
    for (int64_t i = 0; i < host.numel(); ++i)
      if (std::isnan(host.f32()[i])) return ::testing::AssertionFailure() << "element " << i << " is NaN";
    return testing::bitwise_equal(down(a), host);
  }
};

TEST_P(GpuBf16Operands, ConvPassesGiveTheBitsOfTheSameValuesInF32) {
  Rng rng(31);
  for (const int groups : {1, 16}) {  // v4 BF16, and depthwise (the fp32 kernels)
    SCOPED_TRACE(GetParam() + " groups " + std::to_string(groups));
    Conv2dParams p = testing::conv_params(1, 1, 1, 1, 1, 1);
    p.groups = groups;
    const Tensor x = random_tensor({4, 12, 10, 16}, rng), w = random_tensor({32, 3, 3, 16 / groups}, rng);
    const Tensor bias = up(random_tensor({32}, rng)), dy = random_tensor({4, 12, 10, 32}, rng);
    Tensor y = poison({4, 12, 10, 32}), y_b = poison(y.shape());
    Tensor dx = poison(x.shape()), dx_b = poison(x.shape());
    Tensor dw = poison(w.shape()), dw_b = poison(w.shape()), db = poison({32}), db_b = poison({32});
    gpu().conv2d_forward(f32_values(x), f32_values(w), &bias, y, p);
    gpu().conv2d_forward(bf16_values(x), bf16_values(w), &bias, y_b, p);
    gpu().conv2d_backward_data(f32_values(dy), f32_values(w), dx, p);
    gpu().conv2d_backward_data(bf16_values(dy), bf16_values(w), dx_b, p);
    gpu().conv2d_backward_filter(f32_values(x), f32_values(dy), dw, &db, p);
    gpu().conv2d_backward_filter(bf16_values(x), bf16_values(dy), dw_b, &db_b, p);
    EXPECT_TRUE(same_bits(y, y_b));
    EXPECT_TRUE(same_bits(dx, dx_b));
    EXPECT_TRUE(same_bits(dw, dw_b));
    EXPECT_TRUE(same_bits(db, db_b));
    // And the values are those of the cpu reference in bf16.
    auto cpu_bf16 = make_cpu_backend();
    cpu_bf16->set_precision(Precision::bf16);
    Tensor y_cpu({4, 12, 10, 32});
    const Tensor host_bias = down(bias);
    cpu_bf16->conv2d_forward(x, w, &host_bias, y_cpu, p);
    EXPECT_TRUE(testing::close_l2(down(y_b), y_cpu, 1e-2));
  }
}

TEST_P(GpuBf16Operands, LinearPassesGiveTheBitsOfTheSameValuesInF32) {
  Rng rng(32);
  const Tensor x = random_tensor({16, 96}, rng), w = random_tensor({40, 96}, rng), dy = random_tensor({16, 40}, rng);
  const Tensor bias = up(random_tensor({40}, rng));
  Tensor y = poison({16, 40}), y_b = poison({16, 40}), dx = poison(x.shape()), dx_b = poison(x.shape());
  Tensor dw = poison(w.shape()), dw_b = poison(w.shape()), db = poison({40}), db_b = poison({40});
  gpu().linear_forward(f32_values(x), f32_values(w), &bias, y);
  gpu().linear_forward(bf16_values(x), bf16_values(w), &bias, y_b);
  gpu().linear_backward(f32_values(x), f32_values(w), f32_values(dy), &dx, dw, &db);
  gpu().linear_backward(bf16_values(x), bf16_values(w), bf16_values(dy), &dx_b, dw_b, &db_b);
  EXPECT_TRUE(same_bits(y, y_b));
  EXPECT_TRUE(same_bits(dx, dx_b));
  EXPECT_TRUE(same_bits(dw, dw_b));
  EXPECT_TRUE(same_bits(db, db_b));
}

TEST_P(GpuBf16Operands, OtherPrecisionsRefuseThem) {
  gpu().set_precision(Precision::fp32);
  Rng rng(33);
  const Tensor x = up(random_tensor({2, 8}, rng)), w = bf16_values(random_tensor({3, 8}, rng));
  Tensor y = poison({2, 3});
  const std::string error = testing::error_of([&] { gpu().linear_forward(x, w, nullptr, y); });
  EXPECT_NE(error.find("w has dtype BF16, which only bf16 precision takes"), std::string::npos) << error;
}

TEST_P(GpuBf16Operands, SgdWritesTheUpdatedWeightRoundedToNearestEven) {
  Rng rng(34);
  const int64_t n = 10007;
  Tensor param = up(random_tensor({n}, rng)), grad = up(random_tensor({n}, rng)), buf = up(Tensor::zeros({n}));
  Tensor copy = testing::poisoned_device_bytes(gpu(), {n}, DType::bf16);
  SgdStep step;
  step.lr = 0.05f;
  step.momentum = 0.9f;
  step.weight_decay = 5e-4f;
  step.nesterov = true;
  for (int s = 0; s < 3; ++s) gpu().sgd_update(param, grad, buf, step, &copy);
  EXPECT_TRUE(testing::bitwise_equal(down(copy), testing::bf16_tensor(down(param))));
}

TEST_P(GpuBf16Operands, ToBf16MatchesTheCpu) {
  Rng rng(35);
  Tensor src = random_tensor({1000, 3}, rng, -1e3f, 1e3f);
  src.f32()[7] = std::numeric_limits<float>::quiet_NaN();
  Tensor want({3000}, DType::bf16);
  cpu().to_bf16(src, want);
  Tensor got = testing::poisoned_device_bytes(gpu(), {3000}, DType::bf16);
  gpu().to_bf16(up(src), got);
  // NaN stays NaN; its payload is the hardware's (cvt.rn.bf16.f32 may return the canonical NaN).
  Tensor host = down(got);
  EXPECT_TRUE(std::isnan(from_bf16_bits(host.data<uint16_t>()[7])));
  host.data<uint16_t>()[7] = want.data<uint16_t>()[7];
  EXPECT_TRUE(testing::bitwise_equal(host, want));
}

// relu into a bf16 y (bf16 activation storage) and its backward from that y, against the cpu in
// bf16 precision: the same bits (NaN aside, whose payload is the hardware's), in place too.
TEST_P(GpuBf16Operands, ReluWithABf16OutputMatchesTheCpu) {
  Rng rng(36);
  const int64_t n = 4099;  // the 4-wide path and a tail
  Tensor x = random_tensor({n}, rng, -3.0f, 3.0f);
  x.f32()[1] = std::bit_cast<float>(0x3f808000u);  // a tie
  x.f32()[2] = 1.0e-45f;                           // stored as 0
  const Tensor dy = random_tensor({n}, rng);
  auto cpu_bf16 = make_cpu_backend(Precision::bf16);
  Tensor want_y({n}, DType::bf16), want_dx({n});
  cpu_bf16->relu_forward(x, want_y);
  cpu_bf16->relu_backward(want_y, dy, want_dx);
  Tensor y = testing::poisoned_device_bytes(gpu(), {n}, DType::bf16), dx = poison({n});
  gpu().relu_forward(up(x), y);
  EXPECT_TRUE(testing::bitwise_equal(down(y), want_y));
  gpu().relu_backward(y, up(dy), dx);
  EXPECT_TRUE(testing::bitwise_equal(down(dx), want_dx));
  Tensor inplace = up(dy);
  gpu().relu_backward(y, inplace, inplace);
  EXPECT_TRUE(testing::bitwise_equal(down(inplace), want_dx));
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuBf16Operands, ::testing::Values("cuda", "cudnn"), testing::backend_test_name);

}  // namespace
}  // namespace convnet
