// Every shipped config loads and builds (`train CONFIG --dry-run`), and the ResNet recipes build
// the published nets.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/common/cli_runner.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;

std::string config_path(const std::string& name) {
  return std::string(CONVNET_SOURCE_DIR) + "/configs/" + name;
}

TEST(CliConfigs, EveryConfigDryRuns) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(CONVNET_SOURCE_DIR) + "/configs"))
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_GE(names.size(), 6u);  // default, fast94, vgg11_bn, vgg16_bn, resnet18, resnet20 at least
  for (const std::string& name : names) {
    const RunResult r = run_convnet("train " + config_path(name) + " --dry-run --json");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
  }
}

int64_t dry_run_parameters(const std::string& config, const std::string& set = "") {
  const RunResult r = run_convnet("train " + config_path(config) + " --dry-run --json" + set);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  if (r.exit_code != 0) return -1;
  return nlohmann::json::parse(r.out).at("params").get<int64_t>();
}

TEST(CliConfigs, ResNetRecipesBuildThePublishedNets) {
  EXPECT_EQ(dry_run_parameters("resnet18.yaml"), 11'173'962);  // kuangliu/pytorch-cifar ResNet18
  EXPECT_EQ(dry_run_parameters("resnet20.yaml"), 269'722);     // He et al. 2016, option A
  EXPECT_EQ(dry_run_parameters("resnet20.yaml", " --set model.name=resnet56"), 853'018);
}

}  // namespace
}  // namespace convnet
