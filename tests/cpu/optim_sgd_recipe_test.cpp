// SGD features of the airbench-style recipes: weight decay divided by the LR multiplier
// (optimizer.decay_scales_with_lr_mult = false) against a float64 simulation, and parameters that
// train only during their first train_epochs epochs.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/optim/sgd.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

Parameter make_param(const std::string& local_name, std::vector<float> value, bool weight_decay) {
  Parameter p;
  p.name = local_name;
  const auto n = static_cast<int64_t>(value.size());
  p.value = Tensor::from_vector({n}, value);
  p.grad = Tensor::zeros({n});
  p.weight_decay = weight_decay;
  return p;
}

// One parameter's trajectory in float64, straight from the SgdStep formulas (dampening 0).
struct Reference {
  std::vector<double> value, buf;
  double lr_mult, wd;
  void step(double lr, const std::vector<double>& grad, double momentum, bool nesterov, bool decoupled) {
    const double step_lr = lr * lr_mult;
    for (size_t i = 0; i < value.size(); ++i) {
      if (decoupled) value[i] *= 1 - step_lr * wd;
      const double g = grad[i] + (decoupled ? 0.0 : wd * value[i]);
      buf[i] = momentum * buf[i] + g;
      value[i] -= step_lr * (nesterov ? g + momentum * buf[i] : buf[i]);
    }
  }
};

class SgdRecipeTest : public ::testing::TestWithParam<const char*> {
 protected:
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
};

TEST_P(SgdRecipeTest, DecayDividedByLrMultGivesEveryParameterTheSameDecayPerStep) {
  OptimizerConfig config;
  config.momentum = 0.9;
  config.nesterov = true;
  config.weight_decay = 0.05;
  config.weight_decay_mode = GetParam();
  config.decay_norm_and_bias = true;
  config.bias_lr_mult = 64.0;  // airbench: batchnorm biases at 64x the LR
  config.decay_scales_with_lr_mult = false;
  Parameter w = make_param("weight", {1.0f, -2.0f}, true);
  Parameter b = make_param("bias", {0.5f, 0.25f}, false);
  b.lr_mult = 0.5f;  // combined with bias_lr_mult: m = 32
  const std::vector<std::pair<std::string, Parameter*>> named = {{"l.weight", &w}, {"bn.bias", &b}};
  Sgd sgd(config, make_parameter_groups(config, named, {backend_.get(), backend_.get()}));
  EXPECT_FLOAT_EQ(sgd.parameters()[0].weight_decay, 0.05f);
  EXPECT_FLOAT_EQ(sgd.parameters()[1].lr_mult, 32.0f);
  EXPECT_FLOAT_EQ(sgd.parameters()[1].weight_decay, static_cast<float>(0.05 / 32));

  const bool decoupled = config.weight_decay_mode == "decoupled";
  Reference rw{{1.0, -2.0}, {0, 0}, 1.0, 0.05}, rb{{0.5, 0.25}, {0, 0}, 32.0, 0.05 / 32};
  const std::vector<std::vector<double>> grads = {{0.5, 0.25}, {-1.0, 0.5}, {0.25, -0.75}};
  const double lr = 0.002;
  for (size_t s = 0; s < grads.size(); ++s) {
    for (size_t i = 0; i < 2; ++i) {
      w.grad.f32()[i] = static_cast<float>(grads[s][i]);
      b.grad.f32()[i] = static_cast<float>(grads[s][1 - i]);
    }
    sgd.step(lr);
    rw.step(lr, grads[s], 0.9, true, decoupled);
    rb.step(lr, {grads[s][1], grads[s][0]}, 0.9, true, decoupled);
    EXPECT_TRUE(testing::close_l2(w.value, rw.value, 1e-6)) << "step " << s + 1;
    EXPECT_TRUE(testing::close_l2(b.value, rb.value, 1e-6)) << "step " << s + 1;
  }
  // The same decay fraction per step: with zero gradients and momentum, both shrink alike.
  OptimizerConfig plain = config;
  plain.momentum = 0;
  plain.nesterov = false;
  Parameter w2 = make_param("weight", {1.0f}, true), b2 = make_param("bias", {1.0f}, false);
  Sgd sgd2(plain, make_parameter_groups(plain, {{"w", &w2}, {"b", &b2}}, {backend_.get(), backend_.get()}));
  sgd2.step(0.1);
  EXPECT_NEAR(w2.value.f32()[0], 1 - 0.1 * 0.05, 1e-7);
  EXPECT_NEAR(b2.value.f32()[0], w2.value.f32()[0], 1e-7);
}

INSTANTIATE_TEST_SUITE_P(DecayModes, SgdRecipeTest, ::testing::Values("l2", "decoupled"));

TEST(SgdRecipe, DecayScalesWithLrMultByDefault) {
  auto backend = make_cpu_backend();
  OptimizerConfig config;
  config.weight_decay = 0.05;
  config.decay_norm_and_bias = true;
  config.bias_lr_mult = 64.0;
  Parameter b = make_param("bias", {1.0f}, false);
  const auto g = make_parameter_groups(config, {{"b", &b}}, {backend.get()});
  EXPECT_EQ(g[0].weight_decay, 0.05f);  // bit-identical to the plain float conversion
  EXPECT_EQ(g[0].lr_mult, 64.0f);
}

TEST(SgdRecipe, TrainEpochsFreezesValueAndMomentumFromThatEpochOn) {
  auto backend = make_cpu_backend();
  OptimizerConfig config;
  config.momentum = 0.9;
  config.weight_decay = 0.1;
  Parameter limited = make_param("weight", {1.0f, -1.0f}, true);
  limited.train_epochs = 2.0f;  // trains in epochs 0 and 1
  Parameter always = make_param("weight", {1.0f, -1.0f}, true);
  Parameter fractional = make_param("weight", {1.0f, -1.0f}, true);
  fractional.train_epochs = 1.5f;  // epochs 0 and 1 too (airbench: epoch < whiten_bias_epochs)
  Sgd sgd(config, make_parameter_groups(config, {{"a", &limited}, {"b", &always}, {"c", &fractional}},
                                        {backend.get(), backend.get(), backend.get()}));
  Reference ref{{1.0, -1.0}, {0, 0}, 1.0, 0.1};
  for (Parameter* p : {&limited, &always, &fractional}) p->grad.fill(0.5f);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    sgd.step(0.1, epoch);
    ref.step(0.1, {0.5, 0.5}, 0.9, false, false);
    EXPECT_TRUE(testing::close_l2(limited.value, ref.value, 1e-6)) << "epoch " << epoch;
    EXPECT_EQ(fractional.value.to_vector(), limited.value.to_vector()) << "epoch " << epoch;
  }
  const std::vector<float> fractional_value = fractional.value.to_vector();
  const std::vector<float> value = limited.value.to_vector();
  const std::vector<float> momentum = sgd.parameters()[0].momentum.to_vector();
  const std::vector<float> other = always.value.to_vector();
  for (int64_t epoch = 2; epoch < 4; ++epoch) {
    sgd.step(0.1, epoch);
    EXPECT_EQ(limited.value.to_vector(), value) << "epoch " << epoch;
    EXPECT_EQ(sgd.parameters()[0].momentum.to_vector(), momentum) << "epoch " << epoch;
    EXPECT_EQ(fractional.value.to_vector(), fractional_value) << "epoch " << epoch;
  }
  EXPECT_NE(always.value.to_vector(), other);  // train_epochs = 0: always trained
}

}  // namespace
}  // namespace convnet
