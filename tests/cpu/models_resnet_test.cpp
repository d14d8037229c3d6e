// The ResNet builders: parameter counts from first principles and as published, the PyTorch
// module names of kuangliu/pytorch-cifar's ResNet-18 checkpoint, the wiring of the blocks
// (identity, projection and pad shortcuts), the `resnet` blocks form and its errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/train/checkpoint.h"
#include "models/model_builder.h"
#include "models/resnet.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

// Parameters of a BasicBlock ResNet counted from its definition: a 3x3 conv has 9 * in * out
// weights (no bias), a BN 2 * channels (the running statistics are buffers), a projection 1x1
// conv + BN in * out + 2 * out, the linear in * classes + classes.
int64_t count_parameters(int64_t stem, const std::vector<int64_t>& widths, const std::vector<int64_t>& blocks,
                         bool projection, int64_t classes = 10) {
  int64_t total = 9 * 3 * stem + 2 * stem;
  int64_t in = stem;
  for (size_t s = 0; s < widths.size(); ++s)
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t out = widths[s];
      const bool reshapes = (s > 0 && b == 0) || in != out;
      total += 9 * in * out + 2 * out + 9 * out * out + 2 * out;
      if (reshapes && projection) total += in * out + 2 * out;
      in = out;
    }
  return total + in * classes + classes;
}

int64_t he_parameters(int depth, bool projection = false) {
  const int64_t n = (depth - 2) / 6;
  return count_parameters(16, {16, 32, 64}, {n, n, n}, projection);
}

TEST(ModelsResNet, FirstPrinciplesCountsAreThePublishedOnes) {
  EXPECT_EQ(count_parameters(64, {64, 128, 256, 512}, {2, 2, 2, 2}, true), 11'173'962);  // kuangliu ResNet18
  EXPECT_EQ(count_parameters(64, {64, 128, 256, 512}, {3, 4, 6, 3}, true), 21'282'122);  // ResNet34, "21.28M"
  // akamaster's table: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
  EXPECT_EQ(he_parameters(20), 269'722);
  EXPECT_EQ(he_parameters(32), 464'154);
  EXPECT_EQ(he_parameters(44), 658'586);
  EXPECT_EQ(he_parameters(56), 853'018);
  EXPECT_EQ(he_parameters(110), 1'727'962);
  EXPECT_EQ(he_parameters(1202), 19'421'274);
  // Option B (projections) adds the two 1x1 convs + BN: 16*32 + 64 + 32*64 + 128 = 2,752.
  EXPECT_EQ(he_parameters(110, true) - he_parameters(110), 2'752);
}

int64_t built_parameters(const ModelConfig& model, const Shape& example = {8, 8, 3}) {
  auto backend = make_cpu_backend();
  Graph graph;
  add_model_layers(model, example, graph);
  Rng rng(1);
  graph.build(example, *backend, rng);
  return graph.num_parameters();
}

ModelConfig named(const std::string& name, const std::string& shortcut = "auto") {
  ModelConfig m;
  m.name = name;
  m.shortcut = shortcut;
  return m;
}

TEST(ModelsResNet, BuildersHaveTheCountedParameters) {
  EXPECT_EQ(built_parameters(named("resnet18")), count_parameters(64, {64, 128, 256, 512}, {2, 2, 2, 2}, true));
  EXPECT_EQ(built_parameters(named("resnet34")), count_parameters(64, {64, 128, 256, 512}, {3, 4, 6, 3}, true));
  for (int depth : {20, 32, 44, 56, 110, 1202})
    EXPECT_EQ(built_parameters(named("resnet" + std::to_string(depth)), {4, 4, 3}), he_parameters(depth)) << depth;
  EXPECT_EQ(built_parameters(named("resnet20", "projection")), he_parameters(20, true));
  EXPECT_EQ(built_parameters(named("resnet18", "pad")), count_parameters(64, {64, 128, 256, 512}, {2, 2, 2, 2}, false));
  ModelConfig own = named("resnet", "pad");
  own.widths = {8, 16, 24};
  own.blocks = {1, 2, 1};
  own.num_classes = 5;
  EXPECT_EQ(built_parameters(own), count_parameters(8, {8, 16, 24}, {1, 2, 1}, false, 5));
  own.shortcut = "auto";  // the blocks form's own: projection
  EXPECT_EQ(built_parameters(own), count_parameters(8, {8, 16, 24}, {1, 2, 1}, true, 5));
}

// kuangliu's ResNet(BasicBlock, [2, 2, 2, 2]).state_dict(): per module its parameters, then its
// buffers, children in __init__ order (conv1, bn1, conv2, bn2, shortcut).
std::vector<std::string> kuangliu_resnet18_keys() {
  std::vector<std::string> keys;
  const auto bn = [&](const std::string& m) {
    for (const char* k : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
      keys.push_back(m + "." + k);
  };
  keys.push_back("conv1.weight");
  bn("bn1");
  for (int stage = 1; stage <= 4; ++stage)
    for (int b = 0; b < 2; ++b) {
      const std::string m = "layer" + std::to_string(stage) + "." + std::to_string(b);
      keys.push_back(m + ".conv1.weight");
      bn(m + ".bn1");
      keys.push_back(m + ".conv2.weight");
      bn(m + ".bn2");
      if (stage > 1 && b == 0) {
        keys.push_back(m + ".shortcut.0.weight");
        bn(m + ".shortcut.1");
      }
    }
  keys.push_back("linear.weight");
  keys.push_back("linear.bias");
  return keys;
}

TEST(ModelsResNet, ResNet18CheckpointHasKuangliusStateDict) {
  auto backend = make_cpu_backend();
  Graph graph;
  add_model_layers(named("resnet18"), {8, 8, 3}, graph);
  Rng rng(1);
  graph.build({8, 8, 3}, *backend, rng);
  testing::TempDir dir;
  save_checkpoint(dir.file("r18.safetensors"), graph, nullptr, TrainingState{});
  const CheckpointSummary summary = read_checkpoint_summary(dir.file("r18.safetensors"));
  std::vector<std::string> names;
  for (const auto& t : summary.tensors) names.push_back(t.name);
  EXPECT_EQ(names, kuangliu_resnet18_keys());
  const auto shape_of = [&](const std::string& name) {
    for (const auto& t : summary.tensors)
      if (t.name == name) return t.shape;
    return Shape{};
  };
  EXPECT_EQ(shape_of("conv1.weight"), (Shape{64, 3, 3, 3}));
  EXPECT_EQ(shape_of("layer2.0.conv1.weight"), (Shape{128, 64, 3, 3}));
  EXPECT_EQ(shape_of("layer2.0.shortcut.0.weight"), (Shape{128, 64, 1, 1}));
  EXPECT_EQ(shape_of("layer4.1.bn2.running_var"), (Shape{512}));
  EXPECT_EQ(shape_of("linear.weight"), (Shape{10, 512}));
}

struct Built {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  Graph graph;
  size_t index(const std::string& name) const {
    for (size_t i = 0; i < graph.size(); ++i)
      if (graph.layer(i).name() == name) return i;
    ADD_FAILURE() << "no layer " << name;
    return 0;
  }
  std::vector<std::string> inputs(const std::string& name) const {
    std::vector<std::string> out;
    for (int i : graph.layer_inputs(index(name)))
      out.push_back(i == Graph::kGraphInput ? "input" : graph.layer(static_cast<size_t>(i)).name());
    return out;
  }
  bool has(const std::string& name) const {
    for (size_t i = 0; i < graph.size(); ++i)
      if (graph.layer(i).name() == name) return true;
    return false;
  }
};

void build(Built& b, const ModelConfig& model, const Shape& example) {
  add_model_layers(model, example, b.graph);
  Rng rng(1);
  b.graph.build(example, *b.backend, rng);
}

TEST(ModelsResNet, BlocksAddTheirShortcut) {
  Built b;
  build(b, named("resnet20"), {32, 32, 3});
  // An identity shortcut reads the block's input; a pad shortcut subsamples it and pads 8 + 8.
  EXPECT_EQ(b.inputs("layer1.0.add"), (std::vector<std::string>{"layer1.0.bn2", "relu"}));
  EXPECT_EQ(b.inputs("layer1.1.conv1"), (std::vector<std::string>{"layer1.0.relu2"}));
  EXPECT_FALSE(b.has("layer1.0.shortcut"));
  EXPECT_EQ(b.inputs("layer2.0.shortcut"), (std::vector<std::string>{"layer1.2.relu2"}));
  EXPECT_EQ(b.inputs("layer2.0.add"), (std::vector<std::string>{"layer2.0.bn2", "layer2.0.shortcut"}));
  const Layer& pad = b.graph.layer(b.index("layer2.0.shortcut"));
  EXPECT_EQ(pad.description(), "pad_channels s2 +8+8");
  EXPECT_EQ(pad.output_shape(), (Shape{16, 16, 32}));
  EXPECT_EQ(b.graph.layer(b.index("layer3.0.shortcut")).output_shape(), (Shape{8, 8, 64}));
  EXPECT_EQ(b.graph.layer(b.index("layer3.2.relu2")).output_shape(), (Shape{8, 8, 64}));
  EXPECT_EQ(b.graph.layer(b.index("pool")).output_shape(), (Shape{64}));
  EXPECT_EQ(b.graph.output_shape(), (Shape{10}));

  Built p;
  build(p, named("resnet18"), {32, 32, 3});
  EXPECT_EQ(p.inputs("layer2.0.shortcut.0"), (std::vector<std::string>{"layer1.1.relu2"}));
  EXPECT_EQ(p.inputs("layer2.0.add"), (std::vector<std::string>{"layer2.0.bn2", "layer2.0.shortcut.1"}));
  EXPECT_EQ(p.graph.layer(p.index("layer2.0.shortcut.0")).description(), "conv2d 1x1 64->128 s2 p0 no-bias");
  EXPECT_EQ(p.graph.layer(p.index("layer4.1.relu2")).output_shape(), (Shape{4, 4, 512}));
}

TEST(ModelsResNet, ActivationAndDropoutApply) {
  ModelConfig m = named("resnet20");
  m.activation = "gelu";
  m.dropout = 0.25f;
  Built b;
  build(b, m, {8, 8, 3});
  EXPECT_EQ(b.graph.layer(b.index("gelu")).type(), "gelu");
  EXPECT_EQ(b.graph.layer(b.index("layer3.2.gelu2")).type(), "gelu");
  EXPECT_EQ(b.inputs("linear"), (std::vector<std::string>{"dropout"}));
}

TEST(ModelsResNet, BlocksFormErrors) {
  ModelConfig m = named("resnet");
  m.widths = {16, 32};
  m.blocks = {1};
  EXPECT_NE(error_of<ConfigError>([&] { built_parameters(m); }).find("got 2 widths and 1 block counts"),
            std::string::npos);
  m.widths = {32, 16};
  m.blocks = {1, 1};
  m.shortcut = "pad";
  EXPECT_EQ(error_of<ConfigError>([&] { built_parameters(m); }),
            "layer2.0.shortcut: the zero channels added must not be negative, got -8 and -8");
  m.shortcut = "projection";
  EXPECT_EQ(built_parameters(m), count_parameters(32, {32, 16}, {1, 1}, true));
  EXPECT_NE(error_of<ConfigError>([] { resnet_spec(named("vgg11")); }).find("'vgg11' is not a ResNet"),
            std::string::npos);
}

}  // namespace
}  // namespace convnet
