// The conv layer's `groups` option: shapes and parameters, description and FLOPs, the
// ConfigErrors, the initialisations with PyTorch's grouped fans, and pytorch_dirac per group (as
// torch.nn.init.dirac_(w, groups)). The op itself: ops_conv_test; gradients: layer_gradient_test.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/layers/conv2d.h"
#include "core/layers/layer_factory.h"
#include "tests/common/cpu_layer_test.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_tensor;

class LayerConvGroups : public testing::CpuLayerTest {};

Conv2dOptions grouped(int groups, const std::string& init = "kaiming_normal") {
  Conv2dOptions o;
  o.groups = groups;
  o.init = init;
  return o;
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

template <class Fn>
std::string config_error(Fn&& fn) {
  return testing::error_of<ConfigError>(fn);
}

TEST_F(LayerConvGroups, WeightHoldsTheChannelsOfOneGroup) {
  Conv2d conv("dw", 16, 3, 2, 1, 1, true, grouped(8));
  EXPECT_EQ(conv.configure({9, 9, 8}), (Shape{5, 5, 16}));
  build(conv, {9, 9, 8});
  EXPECT_EQ(conv.parameters()[0]->value.shape(), (Shape{16, 3, 3, 1}));
  EXPECT_EQ(conv.parameters()[1]->value.shape(), (Shape{16}));
  EXPECT_EQ(conv.groups(), 8);
  EXPECT_EQ(conv.conv_params().groups, 8);
  EXPECT_EQ(Conv2d("c", 4, 3).conv_params().groups, 1);
}

TEST_F(LayerConvGroups, DescriptionAndFlops) {
  Conv2d g4("c", 128, 3, 1, 1, 1, true, grouped(4));
  EXPECT_EQ(g4.description(), "conv2d 3x3 ?->128 s1 p1 g4");
  g4.configure({16, 16, 64});
  EXPECT_EQ(g4.description(), "conv2d 3x3 64->128 s1 p1 g4");
  EXPECT_EQ(g4.forward_flops(), int64_t{2} * 16 * 16 * 128 * 3 * 3 * 16);  // C / groups = 16 per output
  Conv2d dw("c", 64, 3, 2, 1, 2, false, grouped(32));
  dw.configure({9, 9, 32});  // span 5: (9 + 2 - 5) / 2 + 1 = 4
  EXPECT_EQ(dw.description(), "conv2d 3x3 32->64 s2 p1 d2 depthwise no-bias");
  EXPECT_EQ(dw.forward_flops(), int64_t{2} * 4 * 4 * 64 * 3 * 3);
}

TEST_F(LayerConvGroups, BadGroupsAreConfigErrorsNamingTheLayer) {
  EXPECT_TRUE(contains(config_error([] { Conv2d("conv1", 8, 3, 1, 1, 1, true, grouped(0)); }),
                       "conv1: groups must be positive, got 0"));
  EXPECT_TRUE(contains(config_error([] { Conv2d("conv1", 8, 3, 1, 1, 1, true, grouped(3)); }),
                       "conv1: groups 3 does not divide the 8 output channels"));
  EXPECT_TRUE(contains(config_error([] {
                         Conv2d("conv2", 8, 3, 1, 1, 1, true, grouped(4)).configure({8, 8, 6});
                       }),
                       "conv2: groups 4 does not divide the 6 input channels"));
  EXPECT_TRUE(contains(config_error([] { Conv2d("stem", 24, 2, 1, 0, 1, true, grouped(3, "whitening")); }),
                       "stem: init whitening needs groups 1, got 3"));
  LayerSpec spec;
  spec.type = "conv";
  spec.out_channels = 8;
  spec.groups = 3;
  EXPECT_TRUE(contains(config_error([&] { make_layer(spec, "conv7"); }),
                       "conv7: groups 3 does not divide the 8 output channels"));
}

TEST_F(LayerConvGroups, FactoryPassesGroups) {
  LayerSpec spec;
  spec.type = "conv";
  spec.out_channels = 12;
  spec.padding = 1;
  spec.groups = 2;
  std::unique_ptr<Layer> conv = make_layer(spec, "conv1");
  conv->configure({8, 8, 6});
  EXPECT_EQ(conv->description(), "conv2d 3x3 6->12 s1 p1 g2");
  EXPECT_EQ(static_cast<Conv2d&>(*conv).conv_params().groups, 2);
}

// torch.nn.init._calculate_fan_in_and_fan_out on the grouped weight [K, C/groups, R, S]:
// kaiming_normal's fan_out = K * R * S does not change with groups, pytorch's fan_in does.
TEST_F(LayerConvGroups, InitUsesPyTorchsGroupedFans) {
  Conv2d kaiming("conv", 8, 3, 1, 1, 1, true, grouped(4));
  build(kaiming, {6, 6, 8}, 21);
  Rng rng(21);
  const double std = std::sqrt(2.0 / (8 * 3 * 3));
  const std::vector<float> wk = kaiming.parameters()[0]->value.to_vector();
  ASSERT_EQ(wk.size(), 8u * 3 * 3 * 2);
  for (size_t i = 0; i < wk.size(); ++i) ASSERT_EQ(wk[i], static_cast<float>(std * rng.normal())) << i;

  Conv2d uniform("conv", 256, 3, 1, 1, 1, true, grouped(4, "pytorch"));
  build(uniform, {4, 4, 16}, 5);
  const double bound = 1.0 / std::sqrt(16.0 / 4 * 3 * 3);  // fan_in = C / groups * k * k
  const std::vector<float> wu = uniform.parameters()[0]->value.to_vector();
  ASSERT_EQ(wu.size(), 256u * 9 * 4);
  double sum2 = 0;
  for (float v : wu) {
    ASSERT_GE(v, -bound);
    ASSERT_LT(v, bound);
    sum2 += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(std::sqrt(sum2 / static_cast<double>(wu.size())), bound / std::sqrt(3.0), 0.02 * bound);
}

// dirac_(w, groups): in group g the filters g*K/groups + d, d < min(K, C) / groups, pass input
// channel g*C/groups + d through; every other filter keeps its pytorch init.
TEST_F(LayerConvGroups, PytorchDiracIsPerGroup) {
  struct Case {
    int64_t c, k, groups;
  };
  for (const Case cs : {Case{4, 6, 2}, Case{4, 8, 4}, Case{6, 3, 3}}) {
    SCOPED_TRACE(fmt::format("C {} K {} groups {}", cs.c, cs.k, cs.groups));
    Conv2d conv("conv", static_cast<int>(cs.k), 3, 1, 1, 1, false,
                grouped(static_cast<int>(cs.groups), "pytorch_dirac"));
    build(conv, {5, 5, cs.c}, 9);
    const int64_t gc = cs.c / cs.groups, gk = cs.k / cs.groups;
    const std::vector<float> w = conv.parameters()[0]->value.to_vector();
    Rng rng(2);
    const Tensor x = random_tensor({2, 5, 5, cs.c}, rng);
    Tensor y = output_for(conv, 2);
    conv.forward(x, y, Mode::eval);
    for (int64_t f = 0; f < cs.k; ++f) {
      const int64_t g = f / gk, d = f % gk;
      const float* filter = w.data() + f * 9 * gc;
      if (d >= gc) {  // not an identity: the pytorch init, within its bound
        for (int64_t i = 0; i < 9 * gc; ++i)
          EXPECT_LT(std::abs(filter[i]), 1.0 / std::sqrt(9.0 * static_cast<double>(gc)));
        continue;
      }
      for (int64_t i = 0; i < 9 * gc; ++i) EXPECT_EQ(filter[i], i == 4 * gc + d ? 1.0f : 0.0f) << f << " " << i;
      for (int64_t pix = 0; pix < 2 * 5 * 5; ++pix)
        ASSERT_EQ(y.f32()[pix * cs.k + f], x.f32()[pix * cs.c + g * gc + d]) << f << " " << pix;
    }
  }
}

}  // namespace
}  // namespace convnet
