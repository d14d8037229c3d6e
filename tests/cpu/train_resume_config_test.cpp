// check_resume_config: a resume may change only the keys of resume_changeable_keys(); any other
// difference is refused naming every such key with both values.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/train/resume_config.h"

namespace convnet {
namespace {

const char* kYaml = R"(
model: {name: sequential, layers: [{type: conv, out_channels: 4}, {type: relu}, {type: global_avg_pool},
                                   {type: linear, out_features: 10}]}
data: {dataset: synthetic}
train: {epochs: 6, batch_size: 16, layer_backends: {conv1: cpu}}
output: {dir: runs/a}
)";

Config config_with(const std::vector<std::string>& overrides) {
  return parse_config(kYaml, "a.yaml", overrides);
}

// The ConfigError check_resume_config raises for `overrides`, or "" when it accepts them.
std::string refusal(const std::vector<std::string>& overrides) {
  try {
    check_resume_config("runs/a/last.safetensors", config_with({}), config_with(overrides));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ResumeConfig, TheSameConfigAndEveryChangeableKeyAreAccepted) {
  EXPECT_EQ(refusal({}), "");
  EXPECT_EQ(refusal({"train.epochs=12", "train.max_steps=100", "train.log_every=3", "train.eval_every=2",
                     "train.checkpoint_every=5", "train.save_each_epoch=false", "output.plot=none", "train.threads=1",
                     "data.workers=1", "data.loader=host", "train.distributed_timeout=30", "data.path=elsewhere"}),
            "");
  EXPECT_EQ(resume_changeable_keys().size(), 12u);
}

TEST(ResumeConfig, AnotherBatchSizeIsRefusedWithBothValues) {
  const std::string e = refusal({"train.batch_size=8"});
  EXPECT_NE(e.find("train.batch_size: the checkpoint has 16, now 8"), std::string::npos) << e;
  EXPECT_NE(e.find("runs/a/last.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("train.epochs"), std::string::npos) << "lists what may change: " << e;
}

TEST(ResumeConfig, EveryRefusedKeyIsNamedAndAllowedOnesAreNot) {
  const std::string e = refusal({"train.batch_size=8", "output.dir=runs/b", "optimizer.lr=0.3", "train.epochs=9"});
  EXPECT_NE(e.find("train.batch_size: the checkpoint has 16, now 8"), std::string::npos) << e;
  EXPECT_NE(e.find("output.dir: the checkpoint has runs/a, now runs/b"), std::string::npos) << e;
  EXPECT_NE(e.find("optimizer.lr: the checkpoint has 0.1, now 0.3"), std::string::npos) << e;
  EXPECT_EQ(e.find("train.epochs: the checkpoint"), std::string::npos) << e;
}

TEST(ResumeConfig, DifferencesInListsAndMapsNameTheItem) {
  const Config a = config_with({});
  const std::vector<ConfigDifference> layers =
      config_differences(a, config_with({"model.layers=[{type: conv, out_channels: 8}, {type: relu}, "
                                         "{type: global_avg_pool}, {type: linear, out_features: 10}]"}));
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(layers[0].key, "model.layers[0]");
  EXPECT_NE(layers[0].before.find("out_channels: 4"), std::string::npos) << layers[0].before;
  EXPECT_NE(layers[0].after.find("out_channels: 8"), std::string::npos) << layers[0].after;

  const std::vector<ConfigDifference> backends = config_differences(a, config_with({"train.layer_backends={}"}));
  ASSERT_EQ(backends.size(), 2u);  // the entry is gone, the map is now written as {}
  EXPECT_EQ(backends[0].key, "train.layer_backends.conv1");
  EXPECT_EQ(backends[0].after, "(absent)");
  EXPECT_NE(refusal({"train.layer_backends={}"}).find("train.layer_backends.conv1"), std::string::npos);
}

TEST(ResumeConfig, ValuesSpelledDifferentlyInTheSourceAreEqual) {
  EXPECT_TRUE(config_differences(config_with({"optimizer.lr=0.1"}), config_with({"optimizer.lr=1e-1"})).empty());
}

}  // namespace
}  // namespace convnet
