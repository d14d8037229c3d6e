// Bad configurations: each must throw ConfigError whose message names the file, the 1-based
// line, the key and what was expected.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "tests/common/config_error.h"

namespace convnet {
namespace {

using testing::config_error_of;

::testing::AssertionResult contains(const std::string& message, const std::string& expected) {
  if (message.find(expected) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "message:  " << message << "\nexpected: " << expected;
}

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* expected;  // a substring of the message, including the line
};

class ConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrors, MessageNamesLineKeyAndProblem) {
  EXPECT_TRUE(contains(config_error_of(GetParam().yaml), GetParam().expected));
}

const BadConfig kBadConfigs[] = {
    {"UnknownKeySuggestsClosest", "model:\n  name: vgg11\ndata:\n  path: x\noptimizer:\n  momentum: 0.9\n  lrr: 0.1\n",
     "bad.yaml:7: optimizer.lrr: unknown key (did you mean 'lr'?)"},
    {"UnknownKeyWithoutCloseMatchListsKeys", "train:\n  epochs: 3\n  colour: blue\n",
     "bad.yaml:3: train.colour: unknown key (the keys are epochs, batch_size, backend, precision, conv_bn_fusion, "
     "seed,"},
    {"UnknownSection", "model: {}\ntrian:\n  epochs: 3\n", "bad.yaml:2: trian: unknown key (did you mean 'train'?)"},
    {"UnknownNestedKey", "data:\n  augment:\n    flipp: true\n",
     "bad.yaml:3: data.augment.flipp: unknown key (did you mean 'flip'?)"},
    {"IntegerNotANumber", "train:\n  epochs: 8\n  batch_size: ten\n",
     "bad.yaml:3: train.batch_size: expected an integer in [1, 65536], got 'ten'"},
    {"IntegerFractional", "train:\n  batch_size: 2.5\n",
     "bad.yaml:2: train.batch_size: expected an integer in [1, 65536], got 2.5"},
    {"IntegerBelowRange", "train:\n\n  batch_size: 0\n",
     "bad.yaml:3: train.batch_size: expected an integer in [1, 65536], got 0"},
    {"IntegerOutOfIntRange", "train:\n  log_every: 3000000000\n",
     "bad.yaml:2: train.log_every: expected an integer >= 1, got 3000000000 (too large)"},
    {"Int64OutOfRange", "train:\n  max_steps: 99999999999999999999\n",
     "bad.yaml:2: train.max_steps: expected an integer >= 0, got 99999999999999999999 (too large)"},
    {"NegativeSeed", "train:\n  seed: -1\n", "bad.yaml:2: train.seed: expected an integer >= 0, got -1"},
    {"NegativeThreads", "train:\n  threads: -2\n",
     "bad.yaml:2: train.threads: expected an integer in [0, 1024], got -2"},
    {"BackendNotInList", "model: {}\ndata: {}\n\ntrain:\n  backend: gpu\n",
     "bad.yaml:5: train.backend: expected one of cpu, cuda, cuda_tf32, cudnn, cudnn_tf32, auto, got 'gpu'"},
    {"NegativeLearningRate", "optimizer:\n  lr: -0.1\n", "bad.yaml:2: optimizer.lr: expected a number > 0, got -0.1"},
    {"ZeroLearningRate", "optimizer:\n  lr: 0\n", "bad.yaml:2: optimizer.lr: expected a number > 0, got 0"},
    {"NumberNotNumeric", "optimizer:\n  weight_decay: lots\n",
     "bad.yaml:2: optimizer.weight_decay: expected a number >= 0, got 'lots'"},
    {"MomentumOne", "optimizer:\n  momentum: 1\n",
     "bad.yaml:2: optimizer.momentum: expected a number in [0, 1), got 1"},
    {"GammaZero", "schedule:\n  gamma: 0\n", "bad.yaml:2: schedule.gamma: expected a number in (0, 1], got 0"},
    {"WarmupFactorAboveOne", "schedule:\n  warmup_start_factor: 1.5\n",
     "bad.yaml:2: schedule.warmup_start_factor: expected a number in [0, 1], got 1.5"},
    {"LabelSmoothingOne", "train:\n  label_smoothing: 1.0\n",
     "bad.yaml:2: train.label_smoothing: expected a number in [0, 1), got 1.0"},
    {"ModelDropoutNegative", "model:\n  dropout: -0.5\n",
     "bad.yaml:2: model.dropout: expected a number in [0, 1), got -0.5"},
    {"OneClass", "model:\n  num_classes: 1\n",
     "bad.yaml:2: model.num_classes: expected an integer in [2, 65536], got 1"},
    {"InfinityIsNotANumber", "optimizer:\n  lr: .inf\n", "bad.yaml:2: optimizer.lr: expected a number > 0, got '.inf'"},
    {"MissingValue", "optimizer:\n  lr:\n  momentum: 0.9\n",
     "bad.yaml:2: optimizer.lr: expected a number > 0, got nothing"},
    {"MeanWrongLength", "data:\n  path: x\n  format: auto\n  dataset: cifar10\n  mean: [0.5, 0.5]\n",
     "bad.yaml:5: data.mean: expected a list of 3 numbers, got 2"},
    {"MeanNotAList", "data:\n  mean: 0.5\n", "bad.yaml:2: data.mean: expected a list of 3 numbers, got 0.5"},
    {"MeanItemNotANumber", "data:\n  mean: [0.5, abc, 0.5]\n",
     "bad.yaml:2: data.mean[1]: expected a number, got 'abc'"},
    {"StdItemZeroOnItsOwnLine", "data:\n  std:\n    - 0.2\n    - 0\n    - 0.2\n",
     "bad.yaml:4: data.std[1]: expected a number > 0, got 0"},
    {"BooleanAsNumber", "data:\n  augment:\n    flip: 1\n",
     "bad.yaml:3: data.augment.flip: expected true or false, got 1"},
    {"BooleanAsWord", "optimizer:\n  nesterov: yes\n",
     "bad.yaml:2: optimizer.nesterov: expected true or false, got 'yes'"},
    {"StringGivenAList", "output:\n  dir: [a, b]\n", "bad.yaml:2: output.dir: expected a string, got a list"},
    {"EnumGivenAMapping", "model:\n  activation: {x: 1}\n",
     "bad.yaml:2: model.activation: expected one of relu, gelu, got a mapping"},
    {"PaddingModeUnknown", "data:\n  augment:\n    padding_mode: mirror\n",
     "bad.yaml:3: data.augment.padding_mode: expected one of zero, reflect, got 'mirror'"},
    {"LayerBackendUnknown", "train:\n  layer_backends:\n    conv1: cpu\n    fc: gpu\n",
     "bad.yaml:4: train.layer_backends.fc: expected one of cpu, cuda, cuda_tf32, cudnn, cudnn_tf32, auto, got 'gpu'"},
    {"LayerBackendsNotAMapping", "train:\n  layer_backends: [cpu]\n",
     "bad.yaml:2: train.layer_backends: expected a mapping of names to one of cpu, cuda, cuda_tf32, cudnn, cudnn_tf32, "
     "auto, got "
     "a list"},
    {"LayerBackendsDuplicateName", "train:\n  layer_backends:\n    fc: cpu\n    fc: cuda\n",
     "bad.yaml:4: train.layer_backends.fc: duplicate key (first given on line 3)"},
    {"SectionNotAMapping", "model: {}\ntrain: 5\n", "bad.yaml:2: train: expected a mapping of keys, got 5"},
    {"DuplicateKey", "train:\n  epochs: 3\n  batch_size: 4\n  epochs: 5\n",
     "bad.yaml:4: train.epochs: duplicate key (first given on line 2)"},
    {"MilestonesNotIncreasing", "schedule:\n  name: multistep\n  milestones: [30, 20]\n",
     "bad.yaml:3: schedule.milestones[1]: expected a number > 30 (the list must increase), got 20"},
    {"MilestoneNotPositive", "schedule:\n  milestones:\n    - 0\n",
     "bad.yaml:3: schedule.milestones[0]: expected a number in (0, 1000000], got 0"},
    {"MultistepWithoutMilestones", "schedule:\n  gamma: 0.5\n  name: multistep\n",
     "bad.yaml:3: schedule.milestones: required (a non-empty list) when schedule.name is multistep"},
    {"VggWithoutCfg", "model:\n  batch_norm: true\n  name: vgg\n",
     "bad.yaml:3: model.cfg: required (a non-empty list) when model.name is vgg"},
    {"CfgWithAnotherName", "model:\n  name: vgg11\n  cfg: [64, M]\n",
     "bad.yaml:3: model.cfg: only used when model.name is vgg (model.name is vgg11)"},
    {"CfgBadItem", "model:\n  name: vgg\n  cfg: [64, m]\n",
     "bad.yaml:3: model.cfg[1]: expected a channel count in [1, 65536] or M, got 'm'"},
    {"CfgZeroChannels", "model:\n  name: vgg\n  cfg:\n    - 64\n    - 0\n",
     "bad.yaml:5: model.cfg[1]: expected a channel count in [1, 65536] or M, got 0"},
    {"SequentialWithoutLayers", "model:\n  name: sequential\n",
     "bad.yaml:2: model.layers: required (a non-empty list) when model.name is sequential"},
    {"LayersWithVgg", "model:\n  layers:\n    - {type: relu}\n",
     "bad.yaml:2: model.layers: only used when model.name is sequential (model.name is vgg11)"},
    {"LayerKeyOfAnotherType", R"(model:
  name: sequential
  layers:
    - type: conv
      out_channels: 8
    - type: relu
    - type: conv
      out_channels: 8
      kernel: 3
      padding: 1
    - type: max_pool
      out_channels: 8
)",
     "bad.yaml:12: model.layers[3].out_channels: not a key of a max_pool layer"},
    {"LayerUnknownKey", "model:\n  name: sequential\n  layers:\n    - {type: conv, out_chanels: 8}\n",
     "bad.yaml:4: model.layers[0].out_chanels: unknown key (did you mean 'out_channels'?)"},
    {"LayerWithoutType", "model:\n  name: sequential\n  layers:\n    - {type: relu}\n    - {name: x}\n",
     "bad.yaml:5: model.layers[1]: missing required key 'type' (one of conv, max_pool,"},
    {"LayerUnknownType", "model:\n  name: sequential\n  layers:\n    - type: convv\n",
     "bad.yaml:4: model.layers[0].type: expected one of conv, max_pool, avg_pool, global_avg_pool, relu, gelu, "
     "batch_norm, dropout, flatten, linear, scale, add, concat, identity, got 'convv'"},
    {"ConvWithoutOutChannels", "model:\n  name: sequential\n  layers:\n    - type: conv\n      kernel: 3\n",
     "bad.yaml:4: model.layers[0]: missing required key 'out_channels' for a conv layer"},
    {"LinearWithoutOutFeatures", "model:\n  name: sequential\n  layers:\n    - {type: linear}\n",
     "bad.yaml:4: model.layers[0]: missing required key 'out_features' for a linear layer"},
    {"LayerNotAMapping", "model:\n  name: sequential\n  layers:\n    - relu\n",
     "bad.yaml:4: model.layers[0]: expected a mapping with a 'type' key, got 'relu'"},
    {"DropoutPOne", "model:\n  name: sequential\n  layers:\n    - {type: dropout, p: 1}\n",
     "bad.yaml:4: model.layers[0].p: expected a number in [0, 1), got 1"},
    {"BatchNormEpsZero", "model:\n  name: sequential\n  layers:\n    - type: batch_norm\n      eps: 0\n",
     "bad.yaml:5: model.layers[0].eps: expected a number > 0, got 0"},
    {"ConvStrideZero", "model:\n  name: sequential\n  layers:\n    - {type: conv, out_channels: 4, stride: 0}\n",
     "bad.yaml:4: model.layers[0].stride: expected an integer in [1, 1024], got 0"},
    {"ConvGroupsZero",
     "model:\n  name: sequential\n  layers:\n    - {type: conv, out_channels: 4}\n    - {type: conv, out_channels: 4, "
     "groups: 0}\n",
     "bad.yaml:5: model.layers[1].groups: expected an integer in [1, 65536], got 0"},
    {"GroupsOnAPool", "model:\n  name: sequential\n  layers:\n    - {type: max_pool, groups: 2}\n",
     "bad.yaml:4: model.layers[0].groups: not a key of a max_pool layer"},
    {"LayerDuplicateKey",
     "model:\n  name: sequential\n  layers:\n    - {type: conv, out_channels: 4, out_channels: 5}\n",
     "bad.yaml:4: model.layers[0].out_channels: duplicate key"},
    {"SyntaxError", "train:\n  epochs: 3\n  mean: [1, 2\nmodel: {}\n", "bad.yaml:4: invalid YAML: "},
    {"BadIndentation", "train:\n  epochs: 3\n batch_size: 4\n", "bad.yaml:3: invalid YAML: "},
    {"EmptyFile", "", "bad.yaml:1: the configuration is empty"},
    {"OnlyComments", "# nothing here\n\n", "bad.yaml:1: the configuration is empty"},
    {"TopLevelList", "- model\n- train\n",
     "bad.yaml:1: expected a mapping with the sections model, data, optimizer, schedule, ema, train, output at the top "
     "level, got a list"},
    {"TopLevelScalar", "hello\n", "bad.yaml:1: expected a mapping with the sections"},
    {"TwoDocuments", "train: {}\n---\nmodel: {}\n", "bad.yaml:3: a second YAML document starts here"},
    {"CrlfKeepsLineNumbers", "train:\r\n  epochs: 3\r\n\r\n  backend: gpu\r\n",
     "bad.yaml:4: train.backend: expected one of cpu, cuda, cuda_tf32, cudnn, cudnn_tf32, auto, got 'gpu'"},
};

INSTANTIATE_TEST_SUITE_P(BadYaml, ConfigErrors, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfig>& p) { return std::string(p.param.name); });

TEST(ConfigErrors, ErrorsAreConfigErrors) {
  // ConfigError derives from Error: callers that catch Error see config mistakes too.
  EXPECT_THROW(parse_config("train:\n  epochs: 0\n", "bad.yaml"), ConfigError);
  EXPECT_THROW(parse_config("train:\n  epochs: 0\n", "bad.yaml"), Error);
}

TEST(ConfigErrors, WholeMessageFormat) {
  EXPECT_EQ(config_error_of("train:\n  epochs: 3\n  backend: gpu\n"),
            "bad.yaml:3: train.backend: expected one of cpu, cuda, cuda_tf32, cudnn, cudnn_tf32, auto, got 'gpu'");
}

// ---- overrides ------------------------------------------------------------------------------

const char* kValid = "train:\n  epochs: 3\n";

TEST(ConfigOverrideErrors, UnknownKeySuggestsClosest) {
  EXPECT_EQ(config_error_of(kValid, {"optimizer.lrr=0.1"}),
            "--set optimizer.lrr=0.1: unknown key optimizer.lrr (did you mean 'lr'?)");
}

TEST(ConfigOverrideErrors, UnknownSectionSuggestsClosest) {
  EXPECT_TRUE(contains(config_error_of(kValid, {"trian.epochs=3"}),
                       "--set trian.epochs=3: unknown key trian.epochs (did you mean 'train'?)"));
}

TEST(ConfigOverrideErrors, UnknownKeyWithoutMatchListsKeys) {
  EXPECT_TRUE(contains(config_error_of(kValid, {"output.colour=red"}),
                       "--set output.colour=red: unknown key output.colour (keys of output: dir, plot)"));
}

TEST(ConfigOverrideErrors, Malformed) {
  EXPECT_EQ(config_error_of(kValid, {"foo"}), "--set foo: expected KEY=VALUE, e.g. train.epochs=20");
  EXPECT_TRUE(contains(config_error_of(kValid, {"=3"}), "--set =3: expected KEY=VALUE"));
  EXPECT_TRUE(contains(config_error_of(kValid, {"train..epochs=3"}), "--set train..epochs=3: expected KEY=VALUE"));
}

TEST(ConfigOverrideErrors, KeyBelowAValueOrASection) {
  EXPECT_TRUE(contains(config_error_of(kValid, {"train.epochs.x=1"}),
                       "--set train.epochs.x=1: unknown key train.epochs.x (train.epochs is a value, not a section)"));
  EXPECT_TRUE(contains(config_error_of(kValid, {"data.augment=1"}), "--set data.augment=1: data.augment is a section"));
}

TEST(ConfigOverrideErrors, BadValueNamesTheOverride) {
  EXPECT_EQ(config_error_of(kValid, {"train.epochs=ten"}),
            "--set train.epochs=ten: train.epochs: expected a number in (0, 1000000], got 'ten'");
  EXPECT_EQ(config_error_of(kValid, {"model.cfg=[64, X]", "model.name=vgg"}),
            "--set model.cfg=[64, X]: model.cfg[1]: expected a channel count in [1, 65536] or M, got 'X'");
  EXPECT_EQ(config_error_of(kValid, {"train.seed="}),
            "--set train.seed=: train.seed: expected an integer >= 0, got nothing");
}

TEST(ConfigOverrideErrors, LayerBackendEntry) {
  EXPECT_EQ(config_error_of(kValid, {"train.layer_backends.fc=gpu"}),
            "--set train.layer_backends.fc=gpu: train.layer_backends.fc: expected one of cpu, cuda, cuda_tf32, cudnn, "
            "cudnn_tf32, "
            "auto, got "
            "'gpu'");
  EXPECT_TRUE(contains(config_error_of(kValid, {"train.layer_backends.fc.x=cpu"}),
                       "--set train.layer_backends.fc.x=cpu: unknown key train.layer_backends.fc.x"));
}

TEST(ConfigOverrideErrors, InvalidYamlValue) {
  EXPECT_TRUE(contains(config_error_of(kValid, {"model.cfg=[64, M"}), "--set model.cfg=[64, M: invalid YAML value: "));
}

TEST(ConfigOverrideErrors, RuleBetweenKeysNamesTheOverride) {
  EXPECT_EQ(config_error_of(kValid, {"model.name=vgg"}),
            "--set model.name=vgg: model.cfg: required (a non-empty list) when model.name is vgg");
}

TEST(ConfigOverrideErrors, FileErrorsStillReportedWithOverrides) {
  // The override fixes nothing in the file, so the file's own error (with its line) comes out.
  EXPECT_EQ(config_error_of("train:\n  epochs: 3\noptimizer:\n  lr: -1\n", {"train.epochs=4"}),
            "bad.yaml:4: optimizer.lr: expected a number > 0, got -1");
  // An override can also repair a bad value from the file.
  EXPECT_EQ(parse_config("optimizer:\n  lr: -1\n", "bad.yaml", {"optimizer.lr=0.2"}).optimizer.lr, 0.2);
}

}  // namespace
}  // namespace convnet
