// The ResNet model keys: model.widths, model.blocks (the `resnet` blocks form) and model.shortcut,
// read, written back, and rejected with the file, line and key when they do not fit the model.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "tests/common/config_error.h"

namespace convnet {
namespace {

using testing::config_error_of;

TEST(ConfigResNet, BlocksFormReadsAndRoundTrips) {
  const Config c = parse_config(
      "model:\n  name: resnet\n  widths: [32, 64, 128]\n  blocks: [2, 3, 2]\n"
      "  shortcut: pad\n  activation: gelu\n",
      "r.yaml");
  EXPECT_EQ(c.model.widths, (std::vector<int>{32, 64, 128}));
  EXPECT_EQ(c.model.blocks, (std::vector<int>{2, 3, 2}));
  EXPECT_EQ(c.model.shortcut, "pad");
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("\n  widths: [32, 64, 128]\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("\n  blocks: [2, 3, 2]\n"), std::string::npos) << yaml;
  const Config back = parse_config(yaml, "back.yaml");
  EXPECT_EQ(back.model.widths, c.model.widths);
  EXPECT_EQ(back.model.blocks, c.model.blocks);
  EXPECT_EQ(back.model.shortcut, "pad");
  EXPECT_EQ(back.model.activation, "gelu");
}

TEST(ConfigResNet, NamedNetsAndTheirShortcutOverride) {
  for (const char* name :
       {"resnet18", "resnet34", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"})
    EXPECT_EQ(parse_config(std::string("model: {name: ") + name + "}\n", "r.yaml").model.name, name);
  const Config c = parse_config("model: {name: resnet20}\n", "r.yaml", {"model.shortcut=projection"});
  EXPECT_EQ(c.model.shortcut, "projection");
  EXPECT_EQ(parse_config("model: {name: vgg11}\n", "r.yaml").model.shortcut, "auto");
}

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* expected;  // the whole message
};

class ConfigResNetErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigResNetErrors, MessageNamesLineKeyAndProblem) {
  EXPECT_EQ(config_error_of(GetParam().yaml), GetParam().expected);
}

const BadConfig kBadConfigs[] = {
    {"WidthsRequired", "model:\n  name: resnet\n  blocks: [2, 2]\n",
     "bad.yaml:2: model.widths: required (a non-empty list) when model.name is resnet"},
    {"BlocksRequired", "model:\n  name: resnet\n  widths: [16, 32]\n",
     "bad.yaml:2: model.blocks: required (a non-empty list) when model.name is resnet"},
    {"WidthsOnlyForTheBlocksForm", "model:\n  name: resnet18\n  widths: [16, 32]\n",
     "bad.yaml:3: model.widths: only used when model.name is resnet (model.name is resnet18)"},
    {"BlocksPerWidth", "model:\n  name: resnet\n  widths: [16, 32, 64]\n  blocks: [2, 2]\n",
     "bad.yaml:4: model.blocks: expected one block count per stage of model.widths (3 widths), got 2"},
    {"WidthPositive", "model:\n  name: resnet\n  widths:\n    - 16\n    - 0\n  blocks: [1, 1]\n",
     "bad.yaml:5: model.widths[1]: expected an integer in [1, 65536], got 0"},
    {"BlocksPositive", "model:\n  name: resnet\n  widths: [16, 32]\n  blocks: [1, 0]\n",
     "bad.yaml:4: model.blocks[1]: expected an integer in [1, 1024], got 0"},
    {"WidthsAList", "model:\n  name: resnet\n  widths: 16\n  blocks: [1]\n",
     "bad.yaml:3: model.widths: expected a list of integers in [1, 65536], got 16"},
    {"ShortcutChoice", "model:\n  name: resnet20\n  shortcut: option_a\n",
     "bad.yaml:3: model.shortcut: expected one of auto, projection, pad, got 'option_a'"},
    {"ShortcutOnlyForResNets", "model:\n  name: vgg11\n  shortcut: pad\n",
     "bad.yaml:3: model.shortcut: only used by the ResNets (model.name is vgg11)"},
    {"PadNeedsGrowingWidths", "model:\n  name: resnet\n  widths: [64, 32]\n  blocks: [1, 1]\n  shortcut: pad\n",
     "bad.yaml:3: model.widths[1]: the pad shortcut adds zero channels and cannot remove any, so the widths must "
     "not decrease, got 32 after 64 (shortcut: projection can)"},
    {"ResNetsAlwaysHaveBatchNorm", "model:\n  name: resnet56\n  batch_norm: false\n",
     "bad.yaml:3: model.batch_norm: a ResNet always has batch norm after every conv; false is only for the VGGs"},
};

INSTANTIATE_TEST_SUITE_P(All, ConfigResNetErrors, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfig>& p) { return std::string(p.param.name); });

TEST(ConfigResNet, OverrideErrorsNameTheSet) {
  EXPECT_EQ(config_error_of("model: {name: resnet}\n", {"model.widths=[8,16]", "model.blocks=[1]"}),
            "--set model.blocks=[1]: model.blocks: expected one block count per stage of model.widths (2 widths), "
            "got 1");
}

}  // namespace
}  // namespace convnet
