// Layer state: batchnorm running statistics, dropout masks and modes, parameter initialization
// statistics and the parameter/buffer names and optimizer flags.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/dropout.h"
#include "core/layers/linear.h"
#include "core/layers/pool2d.h"
#include "tests/common/cpu_layer_test.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::close_l2;
using testing::random_tensor;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class LayerState : public testing::CpuLayerTest {};

// Per-channel batch mean and biased variance of x [..., C], in double.
void channel_stats(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t c = x.dim(-1), m = x.numel() / c;
  mean.assign(static_cast<size_t>(c), 0.0);
  var.assign(static_cast<size_t>(c), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) mean[static_cast<size_t>(i % c)] += x.f32()[i];
  for (double& v : mean) v /= static_cast<double>(m);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = x.f32()[i] - mean[static_cast<size_t>(i % c)];
    var[static_cast<size_t>(i % c)] += d * d;
  }
  for (double& v : var) v /= static_cast<double>(m);
}

TEST_F(LayerState, BatchNormRunningStatsAfterTwoTrainForwards) {
  const float momentum = 0.1f;
  BatchNorm2d bn("bn", 1e-5f, momentum);
  build(bn, {3, 3, 4});
  Rng rng(5);
  const int64_t n = 5, m = n * 3 * 3;
  std::vector<double> run_mean(4, 0.0), run_var(4, 1.0);
  for (int step = 0; step < 2; ++step) {
    Tensor x = random_tensor({n, 3, 3, 4}, rng, -1.0f + static_cast<float>(step), 2.0f + static_cast<float>(step));
    Tensor y = output_for(bn, n);
    bn.forward(x, y, Mode::train);
    std::vector<double> mean, var;
    channel_stats(x, mean, var);
    for (size_t c = 0; c < 4; ++c) {
      run_mean[c] = (1 - momentum) * run_mean[c] + momentum * mean[c];
      run_var[c] = (1 - momentum) * run_var[c] + momentum * var[c] * m / (m - 1);  // unbiased
    }
    // Train output uses the batch statistics (gamma 1, beta 0).
    std::vector<double> expect(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) {
      const size_t c = static_cast<size_t>(i % 4);
      expect[static_cast<size_t>(i)] = (x.f32()[i] - mean[c]) / std::sqrt(var[c] + 1e-5);
    }
    EXPECT_TRUE(close_l2(y, expect, 1e-5));
  }
  Buffer* rm = bn.buffers()[0];
  Buffer* rv = bn.buffers()[1];
  Buffer* count = bn.buffers()[2];
  EXPECT_TRUE(close_l2(rm->value, run_mean, 1e-5));
  EXPECT_TRUE(close_l2(rv->value, run_var, 1e-5));
  EXPECT_EQ(count->value.data<int32_t>()[0], 2);
}

TEST_F(LayerState, BatchNormEvalUsesRunningStatsAndChangesNothing) {
  BatchNorm2d bn("bn", 1e-3f);
  build(bn, {2, 2, 3});
  const std::vector<float> mean = {0.5f, -1.0f, 2.0f}, var = {0.25f, 4.0f, 1.5f};
  const std::vector<float> gamma = {1.5f, -0.5f, 2.0f}, beta = {0.1f, 0.2f, -0.3f};
  backend_->copy(bn.buffers()[0]->value, Tensor::from_vector({3}, mean));
  backend_->copy(bn.buffers()[1]->value, Tensor::from_vector({3}, var));
  backend_->copy(bn.parameters()[0]->value, Tensor::from_vector({3}, gamma));
  backend_->copy(bn.parameters()[1]->value, Tensor::from_vector({3}, beta));
  Rng rng(2);
  Tensor x = random_tensor({3, 2, 2, 3}, rng, -2.0f, 3.0f);
  Tensor y = output_for(bn, 3);
  bn.forward(x, y, Mode::eval);
  std::vector<double> expect(static_cast<size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const size_t c = static_cast<size_t>(i % 3);
    expect[static_cast<size_t>(i)] = (x.f32()[i] - mean[c]) / std::sqrt(var[c] + 1e-3) * gamma[c] + beta[c];
  }
  EXPECT_TRUE(close_l2(y, expect, 1e-5));
  EXPECT_EQ(bn.buffers()[0]->value.to_vector(), mean);
  EXPECT_EQ(bn.buffers()[1]->value.to_vector(), var);
  EXPECT_EQ(bn.buffers()[2]->value.data<int32_t>()[0], 0);
}

TEST_F(LayerState, BatchNormNamesFlagsAndInit) {
  BatchNorm2d bn("bn", 1e-5f, 0.1f, /*freeze_scale=*/true, /*bias_lr_mult=*/2.0f);
  build(bn, {4, 4, 6});
  const std::vector<Parameter*> params = bn.parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0]->name, "weight");
  EXPECT_TRUE(params[0]->frozen);
  EXPECT_FALSE(params[0]->weight_decay);
  EXPECT_EQ(params[0]->value.to_vector(), std::vector<float>(6, 1.0f));
  EXPECT_EQ(params[1]->name, "bias");
  EXPECT_FALSE(params[1]->frozen);
  EXPECT_FALSE(params[1]->weight_decay);
  EXPECT_EQ(params[1]->lr_mult, 2.0f);
  EXPECT_EQ(params[1]->value.to_vector(), std::vector<float>(6, 0.0f));
  const std::vector<Buffer*> buffers = bn.buffers();
  ASSERT_EQ(buffers.size(), 3u);
  EXPECT_EQ(buffers[0]->name, "running_mean");
  EXPECT_EQ(buffers[0]->value.to_vector(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(buffers[1]->name, "running_var");
  EXPECT_EQ(buffers[1]->value.to_vector(), std::vector<float>(6, 1.0f));
  EXPECT_EQ(buffers[2]->name, "num_batches_tracked");
  EXPECT_EQ(buffers[2]->value.dtype(), DType::i32);
  EXPECT_EQ(buffers[2]->value.shape(), Shape{});
  EXPECT_TRUE(buffers[2]->value.is_cpu());

  BatchNorm2d plain("bn2");
  build(plain, {3});
  EXPECT_FALSE(plain.parameters()[0]->frozen);
  EXPECT_EQ(plain.parameters()[1]->lr_mult, 1.0f);
}

TEST_F(LayerState, DropoutEvalIsIdentity) {
  Dropout drop("drop", 0.5f);
  build(drop, {4, 4, 3});
  Rng rng(1);
  Tensor x = random_tensor({2, 4, 4, 3}, rng);
  Tensor y = output_for(drop, 2);
  drop.forward(x, y, Mode::eval);
  EXPECT_EQ(y.to_vector(), x.to_vector());
}

TEST_F(LayerState, DropoutTrainKeepsAboutOneMinusPAndRescales) {
  const float p = 0.3f;
  Dropout drop("drop", p);
  build(drop, {100, 100});
  Rng rng(4);
  Tensor x = random_tensor({2, 100, 100}, rng, 0.5f, 1.5f);  // nonzero, so y == 0 means dropped
  Tensor y = output_for(drop, 2);
  drop.set_step_seed(17);
  drop.forward(x, y, Mode::train);
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (y.f32()[i] != 0.0f) {
      ++kept;
      ASSERT_FLOAT_EQ(y.f32()[i], x.f32()[i] / (1 - p)) << i;
    }
  }
  const double fraction = static_cast<double>(kept) / static_cast<double>(x.numel());
  EXPECT_NEAR(fraction, 1 - p, 0.015);  // ~5 standard deviations for 20000 draws
}

TEST_F(LayerState, DropoutMaskDependsOnStepSeedAndLayerName) {
  Rng rng(8);
  Tensor x = random_tensor({1, 256}, rng, 0.5f, 1.5f);
  auto mask = [&](const std::string& name, uint64_t step_seed) {
    Dropout drop(name, 0.5f);
    build(drop, {256});
    Tensor y = output_for(drop, 1);
    drop.set_step_seed(step_seed);
    drop.forward(x, y, Mode::train);
    std::vector<bool> keep;
    for (float v : y.span()) keep.push_back(v != 0.0f);
    return keep;
  };
  EXPECT_EQ(mask("drop1", 3), mask("drop1", 3));  // deterministic
  EXPECT_NE(mask("drop1", 3), mask("drop1", 4));  // new mask each step
  EXPECT_NE(mask("drop1", 3), mask("drop2", 3));  // layers differ
}

TEST_F(LayerState, ConvInitMatchesKaimingFanOut) {
  Conv2d conv("conv", 64, 3, 1, 1);
  build(conv, {8, 8, 32}, 11);
  const Parameter* w = conv.parameters()[0];
  const Parameter* b = conv.parameters()[1];
  ASSERT_EQ(w->value.shape(), (Shape{64, 3, 3, 32}));
  double sum = 0, sum2 = 0;
  for (float v : w->value.span()) {
    sum += v;
    sum2 += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(w->value.numel());
  const double mean = sum / n, std = std::sqrt(sum2 / n - mean * mean);
  const double expected_std = std::sqrt(2.0 / (64 * 3 * 3));
  EXPECT_NEAR(mean, 0.0, 4 * expected_std / std::sqrt(n));
  EXPECT_NEAR(std, expected_std, 0.03 * expected_std);
  EXPECT_EQ(b->value.to_vector(), std::vector<float>(64, 0.0f));
}

TEST_F(LayerState, LinearInitIsPyTorchUniform) {
  Linear fc("fc", 50);
  build(fc, {400}, 12);
  const double bound = 1.0 / std::sqrt(400.0);
  for (const Parameter* p : fc.parameters()) {
    double lo = 1, hi = -1, sum2 = 0;
    for (float v : p->value.span()) {
      lo = std::min(lo, static_cast<double>(v));
      hi = std::max(hi, static_cast<double>(v));
      sum2 += static_cast<double>(v) * v;
    }
    EXPECT_GE(lo, -bound);
    EXPECT_LT(hi, bound);
    EXPECT_LT(lo, -0.8 * bound) << p->name;
    EXPECT_GT(hi, 0.8 * bound) << p->name;
    if (p->name == "weight") {  // 20000 samples: the std of U(-b, b) is b / sqrt(3)
      EXPECT_NEAR(std::sqrt(sum2 / static_cast<double>(p->value.numel())), bound / std::sqrt(3.0), 0.02 * bound);
    }
  }
}

TEST_F(LayerState, InitIsDeterministicPerSeed) {
  auto weights = [&](uint64_t seed) {
    Conv2d conv("conv", 4, 3);
    build(conv, {5, 5, 3}, seed);
    return conv.parameters()[0]->value.to_vector();
  };
  EXPECT_EQ(weights(7), weights(7));
  EXPECT_NE(weights(7), weights(8));
}

TEST_F(LayerState, ParameterNamesAndOptimizerFlags) {
  Conv2d conv("conv", 4, 3);
  build(conv, {5, 5, 3});
  ASSERT_EQ(conv.parameters().size(), 2u);
  const Parameter& cw = *conv.parameters()[0];
  const Parameter& cb = *conv.parameters()[1];
  EXPECT_EQ(cw.name, "weight");
  EXPECT_TRUE(cw.weight_decay);
  EXPECT_EQ(cw.layout, ExportLayout::krsc_to_oihw);
  EXPECT_EQ(cw.grad.shape(), cw.value.shape());
  EXPECT_EQ(cb.name, "bias");
  EXPECT_FALSE(cb.weight_decay);
  EXPECT_EQ(cb.layout, ExportLayout::same);
  EXPECT_EQ(cb.value.shape(), Shape{4});

  Linear fc("fc", 3);
  build(fc, {6});
  const Parameter& lw = *fc.parameters()[0];
  const Parameter& lb = *fc.parameters()[1];
  EXPECT_EQ(lw.name, "weight");
  EXPECT_EQ(lw.value.shape(), (Shape{3, 6}));
  EXPECT_TRUE(lw.weight_decay);
  EXPECT_EQ(lw.layout, ExportLayout::same);
  EXPECT_EQ(lb.name, "bias");
  EXPECT_FALSE(lb.weight_decay);
  EXPECT_FALSE(lw.frozen || lb.frozen);
  EXPECT_TRUE(conv.buffers().empty());
}

TEST_F(LayerState, ScratchFollowsTheBatchSize) {
  // Max pooling keeps its argmax scratch; a smaller last batch must still work, and going back
  // to the larger batch must give the same result as before.
  MaxPool2d pool("pool", 2);
  build(pool, {4, 4, 2});
  Rng rng(9);
  Tensor x4 = random_tensor({4, 4, 4, 2}, rng);
  Tensor y4 = output_for(pool, 4);
  pool.forward(x4, y4, Mode::train);
  const std::vector<float> first = y4.to_vector();
  Tensor x4_again = x4.clone();
  Tensor x3 = backend_->empty({3, 4, 4, 2});
  std::copy(x4.f32(), x4.f32() + x3.numel(), x3.f32());
  Tensor y3 = output_for(pool, 3);
  pool.forward(x3, y3, Mode::train);
  Tensor dy3 = random_tensor({3, 2, 2, 2}, rng), dx3 = backend_->empty({3, 4, 4, 2});
  dx3.fill(kNaN);
  pool.backward(x3, y3, dy3, &dx3);
  for (float v : dx3.span()) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(std::vector<float>(first.begin(), first.begin() + y3.numel()), y3.to_vector());
  y4.fill(kNaN);
  pool.forward(x4_again, y4, Mode::train);
  EXPECT_EQ(y4.to_vector(), first);
}

}  // namespace
}  // namespace convnet
