// Shape inference, descriptions, FLOP counts, the layer factory and every configuration error.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "core/layers/activation.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/dropout.h"
#include "core/layers/flatten.h"
#include "core/layers/layer_factory.h"
#include "core/layers/linear.h"
#include "core/layers/pool2d.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

#define EXPECT_CONFIG_ERROR(statement, fragment)                                                \
  do {                                                                                          \
    const std::string message_ = error_of<ConfigError>([&] { statement; });                     \
    EXPECT_NE(message_.find(fragment), std::string::npos) << "message: \"" << message_ << "\""; \
  } while (0)

TEST(LayerShape, ConvOutputShapes) {
  EXPECT_EQ(Conv2d("c", 64, 3, 1, 1).configure({32, 32, 3}), (Shape{32, 32, 64}));
  EXPECT_EQ(Conv2d("c", 8, 3, 1, 0).configure({5, 7, 2}), (Shape{3, 5, 8}));
  EXPECT_EQ(Conv2d("c", 16, 3, 2, 1).configure({32, 32, 3}), (Shape{16, 16, 16}));
  EXPECT_EQ(Conv2d("c", 16, 3, 2, 1).configure({7, 7, 3}), (Shape{4, 4, 16}));
  EXPECT_EQ(Conv2d("c", 4, 3, 1, 2, 2).configure({10, 9, 3}), (Shape{10, 9, 4}));  // dilated "same"
  EXPECT_EQ(Conv2d("c", 4, 1).configure({6, 6, 5}), (Shape{6, 6, 4}));
}

TEST(LayerShape, ConvKernelLargerThanInputNamesTheLayer) {
  Conv2d conv("conv5", 8, 3);
  EXPECT_EQ(error_of<ConfigError>([&] {
              conv.configure({1, 1, 512});
            }),
            "conv5: input 1x1 is smaller than the 3x3 kernel");
  // Padding makes it fit ...
  EXPECT_EQ(Conv2d("c", 8, 3, 1, 1).configure({1, 1, 4}), (Shape{1, 1, 8}));
  // ... but dilation widens the kernel: 2 + 2*1 = 4 < 5.
  Conv2d dilated("conv2", 8, 3, 1, 1, 2);
  const std::string msg = error_of<ConfigError>([&] { dilated.configure({2, 2, 4}); });
  EXPECT_NE(msg.find("conv2: input 2x2 is smaller than the 3x3 kernel"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dilation 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("5x5"), std::string::npos) << msg;
  // Only one axis too small is still an error.
  EXPECT_CONFIG_ERROR(Conv2d("c", 8, 3).configure({8, 2, 4}), "input 8x2 is smaller than the 3x3 kernel");
}

TEST(LayerShape, ConvRejectsBadInputRankAndHyperparameters) {
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 3).configure({32, 3}), "conv1: expects an image input [H, W, C], got [32, 3]");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 3).configure({512}), "conv1: expects an image input");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 0, 3), "conv1: out_channels must be positive, got 0");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 0), "conv1: kernel must be positive, got 0");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 3, 0), "conv1: stride must be positive, got 0");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 3, 1, -1), "conv1: padding must be non-negative, got -1");
  EXPECT_CONFIG_ERROR(Conv2d("conv1", 8, 3, 1, 1, 0), "conv1: dilation must be positive, got 0");
}

TEST(LayerShape, ConvFlopsAndDescription) {
  Conv2d conv("c", 128, 3, 1, 1);
  EXPECT_EQ(conv.description(), "conv2d 3x3 ?->128 s1 p1");
  conv.configure({16, 16, 64});
  EXPECT_EQ(conv.forward_flops(), int64_t{2} * 16 * 16 * 128 * 3 * 3 * 64);  // 37,748,736
  EXPECT_EQ(conv.forward_flops(), 37748736);
  EXPECT_EQ(conv.description(), "conv2d 3x3 64->128 s1 p1");
  EXPECT_EQ(conv.type(), "conv2d");
  Conv2d strided("c", 8, 3, 2, 0, 2, false);
  strided.configure({9, 9, 3});  // span 5: (9 - 5) / 2 + 1 = 3
  EXPECT_EQ(strided.output_shape(), (Shape{3, 3, 8}));
  EXPECT_EQ(strided.forward_flops(), 2 * 3 * 3 * 8 * 9 * 3);
  EXPECT_EQ(strided.description(), "conv2d 3x3 3->8 s2 p0 d2 no-bias");
}

TEST(LayerShape, PoolOutputShapes) {
  EXPECT_EQ(MaxPool2d("p", 2).configure({32, 32, 64}), (Shape{16, 16, 64}));
  EXPECT_EQ(MaxPool2d("p", 2).configure({5, 7, 3}), (Shape{2, 3, 3}));  // floor mode
  EXPECT_EQ(MaxPool2d("p", 3, 2).configure({7, 7, 2}), (Shape{3, 3, 2}));
  EXPECT_EQ(MaxPool2d("p", 3, 2, 1).configure({7, 7, 2}), (Shape{4, 4, 2}));
  EXPECT_EQ(AvgPool2d("p", 3, 1, 1).configure({6, 5, 4}), (Shape{6, 5, 4}));
  EXPECT_EQ(AvgPool2d("p", 2).configure({4, 4, 8}), (Shape{2, 2, 8}));
  MaxPool2d pool("p", 3, 2, 1);
  EXPECT_EQ(pool.description(), "max_pool2d 3x3 s2 p1");
  EXPECT_EQ(AvgPool2d("p", 2).description(), "avg_pool2d 2x2 s2");
  EXPECT_EQ(pool.type(), "max_pool2d");
  EXPECT_EQ(AvgPool2d("p", 2).type(), "avg_pool2d");
  EXPECT_EQ(pool.forward_flops(), 0);
}

TEST(LayerShape, PoolErrors) {
  EXPECT_CONFIG_ERROR(MaxPool2d("pool2", 2, 2, 2), "pool2: padding 2 is more than half the 2x2 kernel");
  EXPECT_CONFIG_ERROR(AvgPool2d("pool3", 3, 1, 2), "pool3: padding 2 is more than half the 3x3 kernel");
  EXPECT_EQ(error_of<ConfigError>([] { MaxPool2d("p", 3, 2, 1); }), "");  // 1 <= 3 / 2 is fine
  EXPECT_CONFIG_ERROR(MaxPool2d("pool4", 2).configure({1, 1, 512}),
                      "pool4: input 1x1 is smaller than the 2x2 pooling window");
  EXPECT_CONFIG_ERROR(MaxPool2d("pool4", 2).configure({4, 4}), "pool4: expects an image input [H, W, C], got [4, 4]");
  EXPECT_CONFIG_ERROR(MaxPool2d("pool5", 0), "pool5: kernel must be positive, got 0");
  EXPECT_CONFIG_ERROR(AvgPool2d("pool5", 2, -1), "pool5: stride must be positive, got -1");
}

TEST(LayerShape, GlobalAvgPoolFlattensToChannels) {
  GlobalAvgPool gap("gap");
  EXPECT_EQ(gap.configure({4, 3, 64}), (Shape{64}));
  EXPECT_EQ(gap.type(), "global_avg_pool");
  EXPECT_CONFIG_ERROR(GlobalAvgPool("gap7").configure({64}), "gap7: expects an image input [H, W, C], got [64]");
}

TEST(LayerShape, LinearNeedsAFlatInput) {
  Linear fc("linear3", 10);
  EXPECT_EQ(error_of<ConfigError>([&] {
              fc.configure({4, 4, 64});
            }),
            "linear3: expects a flat input, got [4, 4, 64]: add a flatten or global_avg_pool layer before it");
  EXPECT_EQ(fc.configure({512}), (Shape{10}));
  EXPECT_EQ(fc.in_features(), 512);
  EXPECT_EQ(fc.forward_flops(), 2 * 512 * 10);
  EXPECT_EQ(fc.description(), "linear 512->10");
  EXPECT_EQ(Linear("l", 3, false).description(), "linear ?->3 no-bias");
  EXPECT_EQ(fc.type(), "linear");
  EXPECT_CONFIG_ERROR(Linear("fc9", 0), "fc9: out_features must be positive, got 0");
}

TEST(LayerShape, FlattenRecordsTheImageShape) {
  Flatten flat("flatten");
  EXPECT_EQ(flat.configure({4, 4, 64}), (Shape{1024}));
  EXPECT_EQ(flat.input_shape(), (Shape{4, 4, 64}));
  EXPECT_EQ(flat.description(), "flatten [4, 4, 64] -> 1024");
  EXPECT_EQ(flat.type(), "flatten");
  EXPECT_EQ(Flatten("f").configure({7}), (Shape{7}));
  EXPECT_CONFIG_ERROR(Flatten("f2").configure({3, 0, 2}), "f2: expects a non-empty input");
}

TEST(LayerShape, DropoutProbabilityRange) {
  EXPECT_CONFIG_ERROR(Dropout("drop1", 1.0f), "drop1: dropout probability p must be in [0, 1), got 1");
  EXPECT_CONFIG_ERROR(Dropout("drop1", -0.1f), "drop1: dropout probability p must be in [0, 1), got -0.1");
  EXPECT_CONFIG_ERROR(Dropout("drop1", std::numeric_limits<float>::quiet_NaN()), "must be in [0, 1)");
  Dropout ok("d", 0.0f);
  EXPECT_EQ(ok.configure({3, 3, 2}), (Shape{3, 3, 2}));
  EXPECT_EQ(Dropout("d", 0.25f).description(), "dropout p=0.25");
}

TEST(LayerShape, ActivationsAndBatchNormKeepTheShape) {
  EXPECT_EQ(ReLU("r").configure({5, 5, 3}), (Shape{5, 5, 3}));
  EXPECT_EQ(GELU("g").configure({17}), (Shape{17}));
  EXPECT_EQ(ReLU("r").type(), "relu");
  EXPECT_EQ(GELU("g").type(), "gelu");
  BatchNorm2d bn("bn");
  EXPECT_EQ(bn.configure({8, 8, 16}), (Shape{8, 8, 16}));
  EXPECT_EQ(bn.channels(), 16);
  EXPECT_EQ(bn.type(), "batch_norm");
  BatchNorm2d bn1("bn1", 1e-3f, 0.01f, true);
  EXPECT_EQ(bn1.configure({10}), (Shape{10}));
  EXPECT_EQ(bn1.description(), "batch_norm 10 eps 0.001 momentum 0.01 frozen-scale");
  EXPECT_CONFIG_ERROR(BatchNorm2d("bn2", 0.0f), "bn2: eps must be positive, got 0");
  EXPECT_CONFIG_ERROR(BatchNorm2d("bn2", 1e-5f, 1.5f), "bn2: momentum must be in [0, 1], got 1.5");
  EXPECT_CONFIG_ERROR(ReLU("relu4").configure({}), "relu4: expects a non-empty input");
}

// --- factory ---

LayerSpec spec(const std::string& type) {
  LayerSpec s;
  s.type = type;
  return s;
}

TEST(LayerFactory, BuildsEveryType) {
  const std::vector<std::pair<std::string, std::string>> expected = {{"conv", "conv2d"},
                                                                     {"max_pool", "max_pool2d"},
                                                                     {"avg_pool", "avg_pool2d"},
                                                                     {"global_avg_pool", "global_avg_pool"},
                                                                     {"relu", "relu"},
                                                                     {"gelu", "gelu"},
                                                                     {"batch_norm", "batch_norm"},
                                                                     {"dropout", "dropout"},
                                                                     {"flatten", "flatten"},
                                                                     {"linear", "linear"},
                                                                     {"scale", "scale"},
                                                                     {"add", "add"},
                                                                     {"concat", "concat"},
                                                                     {"identity", "identity"}};
  ASSERT_EQ(layer_types().size(), expected.size());
  for (const auto& [config_type, layer_type] : expected) {
    LayerSpec s = spec(config_type);
    s.out_channels = 8;
    s.out_features = 10;
    s.kernel = 2;
    s.stride = 2;
    const std::unique_ptr<Layer> layer = make_layer(s, config_type + "3");
    EXPECT_EQ(layer->type(), layer_type);
    EXPECT_EQ(layer->name(), config_type + "3");
  }
}

TEST(LayerFactory, PassesTheSpecFields) {
  LayerSpec c = spec("conv");
  c.name = "stem";
  c.out_channels = 32;
  c.kernel = 5;
  c.stride = 2;
  c.padding = 2;
  c.dilation = 1;
  c.bias = false;
  std::unique_ptr<Layer> conv = make_layer(c, "conv0");
  EXPECT_EQ(conv->name(), "stem");
  conv->configure({32, 32, 3});
  EXPECT_EQ(conv->description(), "conv2d 5x5 3->32 s2 p2 no-bias");
  EXPECT_EQ(conv->output_shape(), (Shape{16, 16, 32}));

  LayerSpec p = spec("max_pool");
  p.kernel = 3;
  p.stride = 2;
  p.padding = 1;
  EXPECT_EQ(make_layer(p, "pool1")->description(), "max_pool2d 3x3 s2 p1");

  LayerSpec b = spec("batch_norm");
  b.eps = 1e-3f;
  b.momentum = 0.2f;
  b.freeze_scale = true;
  b.bias_lr_mult = 2.0f;
  std::unique_ptr<Layer> bn = make_layer(b, "bn1");
  bn->configure({4});
  EXPECT_EQ(bn->description(), "batch_norm 4 eps 0.001 momentum 0.2 frozen-scale");

  LayerSpec d = spec("dropout");
  d.p = 0.25f;
  EXPECT_EQ(make_layer(d, "drop")->description(), "dropout p=0.25");

  LayerSpec l = spec("linear");
  l.out_features = 10;
  l.bias = false;
  std::unique_ptr<Layer> fc = make_layer(l, "fc");
  fc->configure({20});
  EXPECT_EQ(fc->description(), "linear 20->10 no-bias");
}

TEST(LayerFactory, UnknownTypeListsTheValidOnes) {
  LayerSpec s = spec("convolution");
  s.line = 12;
  const std::string msg = error_of<ConfigError>([&] { make_layer(s, "layer4"); });
  EXPECT_NE(msg.find("layer4: unknown layer type \"convolution\" (line 12)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("conv, max_pool, avg_pool, global_avg_pool, relu, gelu, batch_norm, dropout, flatten, linear"),
            std::string::npos)
      << msg;
}

TEST(LayerFactory, InvalidFieldsNameTheLayer) {
  LayerSpec d = spec("dropout");
  d.p = 1.0f;
  EXPECT_CONFIG_ERROR(make_layer(d, "dropout7"), "dropout7: dropout probability p must be in [0, 1), got 1");
  LayerSpec c = spec("conv");  // out_channels left at 0
  EXPECT_CONFIG_ERROR(make_layer(c, "conv2"), "conv2: out_channels must be positive, got 0");
  LayerSpec p = spec("avg_pool");
  p.kernel = 2;
  p.stride = 2;
  p.padding = 2;
  EXPECT_CONFIG_ERROR(make_layer(p, "pool1"), "pool1: padding 2 is more than half the 2x2 kernel");
}

}  // namespace
}  // namespace convnet
