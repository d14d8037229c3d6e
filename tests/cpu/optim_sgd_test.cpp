// SGD: parameter groups (decay, LR multipliers, momentum buffers) and hand-computed 3-step
// trajectories on the CPU backend for momentum, Nesterov, L2 and decoupled weight decay.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/optim/sgd.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

Parameter make_param(const std::string& local_name, std::vector<float> value, bool weight_decay = true) {
  Parameter p;
  p.name = local_name;
  const auto n = static_cast<int64_t>(value.size());
  p.value = Tensor::from_vector({n}, value);
  p.grad = Tensor::full({n}, std::numeric_limits<float>::quiet_NaN());
  p.weight_decay = weight_decay;
  return p;
}

class SgdTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = make_cpu_backend();

  std::vector<OptimizedParameter> groups(const OptimizerConfig& config,
                                         const std::vector<std::pair<std::string, Parameter*>>& named) {
    return make_parameter_groups(config, named, std::vector<Backend*>(named.size(), backend_.get()));
  }

  // Runs three steps with fixed gradients from value [1, -2] and checks each intermediate value
  // against the trajectory worked out by hand from the SgdStep formulas.
  void check_trajectory(OptimizerConfig config, const std::vector<std::vector<float>>& expected) {
    Parameter p = make_param("weight", {1.0f, -2.0f});
    Sgd sgd(config, groups(config, {{"layer.weight", &p}}));
    const std::vector<std::vector<float>> grads = {{0.5f, 0.25f}, {-1.0f, 0.5f}, {0.25f, -0.75f}};
    for (size_t step = 0; step < 3; ++step) {
      std::copy(grads[step].begin(), grads[step].end(), p.grad.f32());
      sgd.step(0.1);
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_NEAR(p.value.f32()[i], expected[step][i], 1e-6) << "step " << step + 1 << " element " << i;
      }
    }
  }
};

TEST_F(SgdTest, DefaultGroupsDecayOnlyWeights) {
  Parameter conv_w = make_param("weight", {1, 2});
  Parameter conv_b = make_param("bias", {1, 2}, false);
  Parameter bn_w = make_param("weight", {1, 2}, false);
  Parameter bn_b = make_param("bias", {1, 2}, false);
  OptimizerConfig config;
  config.weight_decay = 5e-4;
  const auto g = groups(config, {{"features.0.weight", &conv_w},
                                 {"features.0.bias", &conv_b},
                                 {"features.1.weight", &bn_w},
                                 {"features.1.bias", &bn_b}});
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0].full_name, "features.0.weight");
  EXPECT_EQ(g[0].param, &conv_w);
  EXPECT_EQ(g[0].backend, backend_.get());
  EXPECT_FLOAT_EQ(g[0].weight_decay, 5e-4f);
  EXPECT_EQ(g[1].weight_decay, 0.0f);
  EXPECT_EQ(g[2].weight_decay, 0.0f);
  EXPECT_EQ(g[3].weight_decay, 0.0f);
  for (const auto& p : g) EXPECT_EQ(p.lr_mult, 1.0f) << p.full_name;
}

TEST_F(SgdTest, DecayNormAndBiasDecaysEverything) {
  Parameter w = make_param("weight", {1});
  Parameter b = make_param("bias", {1}, false);
  Parameter bn = make_param("weight", {1}, false);
  OptimizerConfig config;
  config.weight_decay = 0.01;
  config.decay_norm_and_bias = true;
  const auto g = groups(config, {{"a.weight", &w}, {"a.bias", &b}, {"bn.weight", &bn}});
  for (const auto& p : g) EXPECT_FLOAT_EQ(p.weight_decay, 0.01f) << p.full_name;
}

TEST_F(SgdTest, LrMultipliersForBiasesNormScalesAndParameters) {
  Parameter conv_w = make_param("weight", {1});
  Parameter conv_b = make_param("bias", {1}, false);
  Parameter bn_w = make_param("weight", {1}, false);
  Parameter bn_b = make_param("bias", {1}, false);
  bn_b.lr_mult = 3.0f;  // e.g. LayerSpec::bias_lr_mult on a batchnorm layer
  Parameter scaled_w = make_param("weight", {1});
  scaled_w.lr_mult = 0.25f;
  OptimizerConfig config;
  config.bias_lr_mult = 2.0;
  config.norm_lr_mult = 0.5;
  const auto g = groups(
      config,
      {{"c.weight", &conv_w}, {"c.bias", &conv_b}, {"bn.weight", &bn_w}, {"bn.bias", &bn_b}, {"s.weight", &scaled_w}});
  EXPECT_FLOAT_EQ(g[0].lr_mult, 1.0f);
  EXPECT_FLOAT_EQ(g[1].lr_mult, 2.0f);
  EXPECT_FLOAT_EQ(g[2].lr_mult, 0.5f);
  EXPECT_FLOAT_EQ(g[3].lr_mult, 6.0f);
  EXPECT_FLOAT_EQ(g[4].lr_mult, 0.25f);
}

TEST_F(SgdTest, MomentumBuffersAreZeroedOnTheParameterDevice) {
  Parameter w = make_param("weight", {1, 2, 3});
  w.value = w.value.reshaped({3, 1});
  OptimizerConfig config;
  config.momentum = 0.9;
  const auto g = groups(config, {{"w", &w}});
  ASSERT_TRUE(g[0].momentum.defined());
  EXPECT_EQ(g[0].momentum.shape(), (Shape{3, 1}));
  EXPECT_EQ(g[0].momentum.device(), backend_->device());
  EXPECT_EQ(g[0].momentum.to_vector(), (std::vector<float>{0, 0, 0}));
  EXPECT_NE(g[0].momentum.raw(), w.value.raw());
}

TEST_F(SgdTest, NoMomentumBufferWithoutMomentum) {
  Parameter w = make_param("weight", {1, 2});
  OptimizerConfig config;
  config.momentum = 0.0;
  const auto g = groups(config, {{"w", &w}});
  EXPECT_FALSE(g[0].momentum.defined());
}

TEST_F(SgdTest, PlainSgdTrajectory) {
  OptimizerConfig config;
  config.momentum = 0.0;
  config.weight_decay = 0.0;
  check_trajectory(config, {{0.95f, -2.025f}, {1.05f, -2.075f}, {1.025f, -2.0f}});
}

TEST_F(SgdTest, MomentumTrajectory) {
  OptimizerConfig config;
  config.momentum = 0.9;
  config.weight_decay = 0.0;
  check_trajectory(config, {{0.95f, -2.025f}, {1.005f, -2.0975f}, {1.0295f, -2.08775f}});
}

TEST_F(SgdTest, NesterovTrajectory) {
  OptimizerConfig config;
  config.momentum = 0.9;
  config.nesterov = true;
  config.weight_decay = 0.0;
  check_trajectory(config, {{0.905f, -2.0475f}, {1.0545f, -2.16275f}, {1.05155f, -2.078975f}});
}

TEST_F(SgdTest, L2WeightDecayTrajectory) {
  OptimizerConfig config;
  config.momentum = 0.9;
  config.weight_decay = 0.05;
  config.weight_decay_mode = "l2";
  check_trajectory(config, {{0.945f, -2.015f}, {0.990775f, -2.068425f}, {1.002018625f, -2.031165375f}});
}

TEST_F(SgdTest, DecoupledWeightDecayTrajectory) {
  OptimizerConfig config;
  config.momentum = 0.9;
  config.weight_decay = 0.05;
  config.weight_decay_mode = "decoupled";
  check_trajectory(config, {{0.945f, -2.015f}, {0.995275f, -2.077425f}, {1.014798625f, -2.057287875f}});
}

TEST_F(SgdTest, StepAppliesLrMultAndSkipsFrozen) {
  Parameter w = make_param("weight", {1.0f, -2.0f});
  Parameter b = make_param("bias", {0.5f, 0.25f}, false);
  Parameter frozen = make_param("weight", {3.0f, 4.0f});
  frozen.frozen = true;
  for (Parameter* p : {&w, &b, &frozen}) {
    p->grad.f32()[0] = 0.5f;
    p->grad.f32()[1] = -1.0f;
  }
  OptimizerConfig config;
  config.momentum = 0.0;
  config.weight_decay = 0.1;  // applies to w only
  config.bias_lr_mult = 2.0;
  Sgd sgd(config, groups(config, {{"l.weight", &w}, {"l.bias", &b}, {"f.weight", &frozen}}));
  EXPECT_EQ(sgd.parameters().size(), 3u);
  sgd.step(0.2);
  // w: g = grad + 0.1 * w = [0.6, -1.2]; w -= 0.2 * g
  EXPECT_NEAR(w.value.f32()[0], 0.88f, 1e-6);
  EXPECT_NEAR(w.value.f32()[1], -1.76f, 1e-6);
  // b: no decay, lr 0.2 * 2: b -= 0.4 * grad
  EXPECT_NEAR(b.value.f32()[0], 0.3f, 1e-6);
  EXPECT_NEAR(b.value.f32()[1], 0.65f, 1e-6);
  EXPECT_EQ(frozen.value.to_vector(), (std::vector<float>{3.0f, 4.0f}));
}

TEST_F(SgdTest, FrozenParameterKeepsZeroMomentum) {
  Parameter frozen = make_param("weight", {3.0f, 4.0f});
  frozen.frozen = true;
  frozen.grad.fill(1.0f);
  OptimizerConfig config;
  config.momentum = 0.9;
  Sgd sgd(config, groups(config, {{"f.weight", &frozen}}));
  sgd.step(0.1);
  sgd.step(0.1);
  EXPECT_EQ(frozen.value.to_vector(), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_EQ(sgd.parameters()[0].momentum.to_vector(), (std::vector<float>{0.0f, 0.0f}));
}

TEST_F(SgdTest, InvalidConfigurationsAreConfigErrors) {
  Parameter w = make_param("weight", {1});
  const std::vector<std::pair<std::string, Parameter*>> named = {{"w", &w}};
  OptimizerConfig bad_mode;
  bad_mode.weight_decay_mode = "adamw";
  EXPECT_THROW(groups(bad_mode, named), ConfigError);
  OptimizerConfig bad_nesterov;
  bad_nesterov.momentum = 0;
  bad_nesterov.nesterov = true;
  EXPECT_THROW(groups(bad_nesterov, named), ConfigError);
  OptimizerConfig bad_name;
  bad_name.name = "adam";
  EXPECT_THROW(groups(bad_name, named), ConfigError);
  OptimizerConfig ok;
  EXPECT_THROW(make_parameter_groups(ok, named, {}), Error);  // one backend per parameter
}

}  // namespace
}  // namespace convnet
