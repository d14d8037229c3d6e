// The scale layer (y = factor * x) and the conv / linear init and training options: init modes
// kaiming_normal, pytorch and pytorch_dirac, frozen weights, bias train_epochs, and the
// ConfigErrors for bad options. Whitening init: layer_whitening_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/layers/conv2d.h"
#include "core/layers/layer_factory.h"
#include "core/layers/linear.h"
#include "core/layers/scale.h"
#include "tests/common/cpu_layer_test.h"
#include "tests/common/gradient_check.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::close_l2;
using testing::error_of;
using testing::gradients_match;
using testing::random_tensor;

class LayerScaleInit : public testing::CpuLayerTest {};

Conv2dOptions with_init(const std::string& init) {
  Conv2dOptions o;
  o.init = init;
  return o;
}

// --- scale ---

TEST_F(LayerScaleInit, ScaleForwardAndBackwardMatchFloat64) {
  const float factor = 1.0f / 9.0f;
  Scale scale("scale", factor);
  build(scale, {3, 4, 5});
  EXPECT_EQ(scale.output_shape(), (Shape{3, 4, 5}));
  EXPECT_TRUE(scale.parameters().empty());
  Rng rng(3);
  Tensor x = random_tensor({2, 3, 4, 5}, rng, -50.0f, 50.0f);
  Tensor y = output_for(scale, 2);
  scale.forward(x, y, Mode::train);
  std::vector<double> expect;
  for (float v : x.span()) expect.push_back(static_cast<double>(v) * (1.0 / 9.0));
  EXPECT_TRUE(close_l2(y, expect, 1e-6));

  Tensor dy = random_tensor({2, 3, 4, 5}, rng, -3.0f, 3.0f);
  Tensor dx = output_for(scale, 2);
  scale.backward(x, y, dy, &dx);
  expect.clear();
  for (float v : dy.span()) expect.push_back(static_cast<double>(v) * (1.0 / 9.0));
  EXPECT_TRUE(close_l2(dx, expect, 1e-6));
  scale.backward(x, y, dy, nullptr);  // first layer: no dx, nothing to do
}

TEST_F(LayerScaleInit, ScaleGradientCheck) {
  Scale image("scale", 1.0f / 9.0f);
  EXPECT_TRUE(gradients_match(image, {3, 3, 2}, *backend_));
  Scale flat("logits", -2.5f);
  EXPECT_TRUE(gradients_match(flat, {10}, *backend_));
}

TEST_F(LayerScaleInit, ScaleFactoryDescriptionAndErrors) {
  LayerSpec s;
  s.type = "scale";
  s.factor = 0.125f;
  std::unique_ptr<Layer> layer = make_layer(s, "scale7");
  EXPECT_EQ(layer->type(), "scale");
  EXPECT_EQ(layer->name(), "scale7");
  EXPECT_EQ(layer->description(), "scale 0.125");
  EXPECT_EQ(static_cast<Scale&>(*layer).factor(), 0.125f);
  EXPECT_NE(std::find(layer_types().begin(), layer_types().end(), "scale"), layer_types().end());
  EXPECT_NE(error_of<ConfigError>([] {
              Scale("s1", std::numeric_limits<float>::infinity());
            }).find("s1: factor must be finite"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([] { Scale("s2", 1.0f).configure({}); }).find("s2: expects a non-empty input"),
            std::string::npos);
}

// --- conv init modes ---

TEST_F(LayerScaleInit, KaimingNormalIsUnchanged) {
  // The default draws exactly what it always did: std * rng.normal() per element, in order.
  for (const bool explicit_name : {false, true}) {
    Conv2d conv =
        explicit_name ? Conv2d("conv", 8, 3, 1, 1, 1, true, with_init("kaiming_normal")) : Conv2d("conv", 8, 3, 1, 1);
    build(conv, {6, 6, 5}, 21);
    Rng rng(21);
    const double std = std::sqrt(2.0 / (8 * 3 * 3));
    const std::vector<float> w = conv.parameters()[0]->value.to_vector();
    ASSERT_EQ(w.size(), 8u * 3 * 3 * 5);
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(w[i], static_cast<float>(std * rng.normal())) << i;
    EXPECT_EQ(conv.parameters()[1]->value.to_vector(), std::vector<float>(8, 0.0f));
    EXPECT_EQ(conv.description(), "conv2d 3x3 5->8 s1 p1");
    EXPECT_FALSE(conv.wants_data_init());
  }
}

TEST_F(LayerScaleInit, PytorchInitIsUniformWithinOneOverSqrtFanIn) {
  Conv2d conv("conv", 64, 3, 1, 1, 1, true, with_init("pytorch"));
  build(conv, {4, 4, 16}, 5);
  const double bound = 1.0 / std::sqrt(16.0 * 3 * 3);  // fan_in = C * k * k
  const std::vector<float> w = conv.parameters()[0]->value.to_vector();
  ASSERT_EQ(w.size(), 64u * 9 * 16);  // 9216 samples
  std::vector<int> bins(4, 0);
  double sum = 0, sum2 = 0;
  for (float v : w) {
    ASSERT_GE(v, -bound);
    ASSERT_LT(v, bound);
    sum += v;
    sum2 += static_cast<double>(v) * v;
    ++bins[static_cast<size_t>(std::clamp(static_cast<int>((v + bound) / (2 * bound) * 4), 0, 3))];
  }
  const double n = static_cast<double>(w.size());
  EXPECT_NEAR(sum / n, 0.0, 4 * bound / std::sqrt(3 * n));
  EXPECT_NEAR(std::sqrt(sum2 / n), bound / std::sqrt(3.0), 0.02 * bound);
  for (int b : bins) EXPECT_NEAR(b / n, 0.25, 0.02);  // ~5 sigma
  EXPECT_EQ(conv.parameters()[1]->value.to_vector(), std::vector<float>(64, 0.0f));
  EXPECT_EQ(conv.description(), "conv2d 3x3 16->64 s1 p1 init pytorch");
}

TEST_F(LayerScaleInit, PytorchDiracPassesTheFirstChannelsThrough) {
  const int64_t c = 4, k_out = 6;
  Conv2d conv("conv", static_cast<int>(k_out), 3, 1, 1, 1, true, with_init("pytorch_dirac"));
  build(conv, {5, 5, c}, 9);
  Rng rng(2);
  Tensor x = random_tensor({2, 5, 5, c}, rng);
  Tensor y = output_for(conv, 2);
  conv.forward(x, y, Mode::eval);
  for (int64_t pix = 0; pix < 2 * 5 * 5; ++pix)
    for (int64_t ch = 0; ch < c; ++ch)
      ASSERT_NEAR(y.f32()[pix * k_out + ch], x.f32()[pix * c + ch], 1e-6) << pix << " " << ch;
  // The remaining filters keep their pytorch init: not all zero, within the bound.
  const std::vector<float> w = conv.parameters()[0]->value.to_vector();
  const double bound = 1.0 / std::sqrt(static_cast<double>(c) * 9);
  int nonzero = 0;
  for (size_t i = static_cast<size_t>(c * 9 * c); i < w.size(); ++i) {
    EXPECT_LT(std::abs(w[i]), bound);
    nonzero += w[i] != 0.0f;
  }
  EXPECT_GT(nonzero, 60);
}

TEST_F(LayerScaleInit, PytorchDiracFewerFiltersThanChannelsAndEvenKernel) {
  // K = 2 < C = 3, kernel 2: filters 0 and 1 are identities at tap (1, 1) = (k/2, k/2), as torch.
  Conv2d conv("conv", 2, 2, 1, 0, 1, false, with_init("pytorch_dirac"));
  build(conv, {4, 4, 3}, 1);
  const Tensor& w = conv.parameters()[0]->value;
  ASSERT_EQ(w.shape(), (Shape{2, 2, 2, 3}));
  for (int64_t f = 0; f < 2; ++f)
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t s = 0; s < 2; ++s)
        for (int64_t ch = 0; ch < 3; ++ch)
          EXPECT_EQ(w.f32()[((f * 2 + r) * 2 + s) * 3 + ch], r == 1 && s == 1 && ch == f ? 1.0f : 0.0f)
              << f << r << s << ch;
}

TEST_F(LayerScaleInit, FreezeWeightAndBiasTrainEpochs) {
  Conv2dOptions o = with_init("pytorch");
  o.freeze_weight = true;
  o.bias_train_epochs = 3;
  Conv2d conv("conv", 4, 3, 1, 1, 1, true, o);
  build(conv, {5, 5, 3});
  EXPECT_TRUE(conv.parameters()[0]->frozen);
  EXPECT_EQ(conv.parameters()[0]->train_epochs, 0.0f);
  EXPECT_FALSE(conv.parameters()[1]->frozen);
  EXPECT_EQ(conv.parameters()[1]->train_epochs, 3.0f);
  EXPECT_EQ(conv.description(), "conv2d 3x3 3->4 s1 p1 init pytorch frozen-weight bias-epochs 3");

  Linear fc("fc", 5, true, LinearOptions{true, 1.5f});
  build(fc, {6});
  EXPECT_TRUE(fc.parameters()[0]->frozen);
  EXPECT_FALSE(fc.parameters()[1]->frozen);
  EXPECT_EQ(fc.parameters()[1]->train_epochs, 1.5f);
  EXPECT_EQ(fc.description(), "linear 6->5 frozen-weight bias-epochs 1.5");

  Conv2d plain("conv", 4, 3);
  Linear plain_fc("fc", 5);
  for (Layer* layer : {static_cast<Layer*>(&plain), static_cast<Layer*>(&plain_fc)})
    for (const Parameter* p : layer->parameters()) {
      EXPECT_FALSE(p->frozen);
      EXPECT_EQ(p->train_epochs, 0.0f);
    }
}

TEST_F(LayerScaleInit, FactoryPassesInitAndTrainingOptions) {
  LayerSpec c;
  c.type = "conv";
  c.out_channels = 24;
  c.kernel = 2;
  c.init = "whitening";
  c.whitening_eps = 1e-3f;
  c.freeze_weight = true;
  c.bias_train_epochs = 3;
  std::unique_ptr<Layer> conv = make_layer(c, "whiten");
  conv->configure({8, 8, 3});
  EXPECT_EQ(conv->description(), "conv2d 2x2 3->24 s1 p0 init whitening frozen-weight bias-epochs 3");
  EXPECT_TRUE(conv->wants_data_init());
  EXPECT_EQ(static_cast<Conv2d&>(*conv).init(), ConvInit::whitening);

  LayerSpec l;
  l.type = "linear";
  l.out_features = 10;
  l.bias = false;
  l.freeze_weight = true;
  std::unique_ptr<Layer> fc = make_layer(l, "head");
  fc->configure({4});
  EXPECT_EQ(fc->description(), "linear 4->10 no-bias frozen-weight");
}

TEST_F(LayerScaleInit, BadOptionsAreConfigErrors) {
  auto message = [](auto&& fn) { return error_of<ConfigError>(fn); };
  EXPECT_EQ(message([] { Conv2d("stem", 8, 3, 1, 1, 1, true, with_init("xavier")); }),
            "stem: unknown init \"xavier\"; expected one of: kaiming_normal, pytorch, pytorch_dirac, whitening");
  LayerSpec c;
  c.type = "conv";
  c.out_channels = 8;
  c.init = "Kaiming_Normal";
  EXPECT_NE(message([&] { make_layer(c, "conv3"); }).find("conv3: unknown init \"Kaiming_Normal\""), std::string::npos);
  Conv2dOptions o;
  o.whitening_eps = 0;
  EXPECT_NE(message([&] { Conv2d("c", 8, 3, 1, 1, 1, true, o); }).find("c: whitening_eps must be positive"),
            std::string::npos);
  o = {};
  o.bias_train_epochs = -1;
  EXPECT_NE(message([&] { Conv2d("c", 8, 3, 1, 1, 1, true, o); }).find("c: bias_train_epochs must be non-negative"),
            std::string::npos);
  o.bias_train_epochs = 2;
  EXPECT_NE(message([&] { Conv2d("c", 8, 3, 1, 1, 1, false, o); })
                .find("c: bias_train_epochs = 2 but the layer has "
                      "no bias"),
            std::string::npos);
  EXPECT_NE(message([] {
              Linear("fc", 4, false, LinearOptions{false, 1});
            }).find("fc: bias_train_epochs = 1 but the layer has no bias"),
            std::string::npos);
}

}  // namespace
}  // namespace convnet
