// train.precision end to end on the cpu backend, the reference the GPU backends follow: bf16 (and
// tf32) training of the default model follows the fp32 loss curve, the weights stay fp32 in the
// checkpoint, and a precision a backend cannot compute is a clear config error.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tests/common/app_test_util.h"
#include "tests/common/test_util.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::TempDir;
using testing::train;

constexpr int kSteps = 300;
constexpr int kLogEvery = 25;

// configs/default.yaml's model and optimizer on 16x16 synthetic images: 300 steps at batch 64.
Config precision_config(const std::string& out_dir, const std::string& precision) {
  return parse_config(
      R"(
model: {name: vgg, cfg: [32, M, 64, M, 128, M], batch_norm: true, pool: avg, num_classes: 10}
data:
  dataset: synthetic
  synthetic_train_size: 2048
  synthetic_test_size: 256
  synthetic_image_size: 16
  workers: 1
  augment: {crop_padding: 2, padding_mode: reflect, flip: true}
optimizer: {lr: 0.2, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
schedule: {name: linear, warmup_epochs: 0.3, final_lr_factor: 0.0}
train: {epochs: 10, batch_size: 64, seed: 0, label_smoothing: 0.1, threads: 2, save_each_epoch: false}
output: {plot: none}
)",
      "precision.yaml",
      {"output.dir=" + out_dir, "train.precision=" + precision, "train.max_steps=" + std::to_string(kSteps),
       "train.log_every=" + std::to_string(kLogEvery), "train.eval_every=100"});
}

// The train loss records of metrics.jsonl every kLogEvery steps (the epoch ends have lines too).
std::vector<double> train_losses(const std::string& path) {
  std::vector<double> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("split") == "train" && j.at("step").get<int64_t>() % kLogEvery == 0)
      out.push_back(j.at("loss").get<double>());
  }
  return out;
}

TEST(AppTrainPrecision, Bf16AndTf32FollowTheFp32LossCurveWithin2Percent) {
  TempDir fp32_dir, bf16_dir, tf32_dir;
  const TrainResult fp32 = train(precision_config(fp32_dir.path(), "fp32"));
  const TrainResult bf16 = train(precision_config(bf16_dir.path(), "bf16"));
  const TrainResult tf32 = train(precision_config(tf32_dir.path(), "tf32"));
  ASSERT_EQ(fp32.steps, kSteps);
  ASSERT_EQ(bf16.steps, kSteps);
  ASSERT_EQ(tf32.steps, kSteps);
  const std::vector<double> want = train_losses(fp32_dir.file("metrics.jsonl"));
  ASSERT_EQ(want.size(), static_cast<size_t>(kSteps / kLogEvery));
  EXPECT_LT(want.back(), 0.8 * want.front()) << "the fp32 run must learn for the comparison to mean anything";
  for (const auto& [name, dir] : {std::pair{"bf16", &bf16_dir}, std::pair{"tf32", &tf32_dir}}) {
    const std::vector<double> got = train_losses(dir->file("metrics.jsonl"));
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 0.02 * want[i]) << name << ", steps " << i * kLogEvery << "-" << (i + 1) * kLogEvery;
  }
  // The precisions differ: bf16 rounds operands, so its curve is not fp32's bit for bit.
  EXPECT_NE(train_losses(bf16_dir.file("metrics.jsonl")), want);

  // Master weights stay fp32 (what PyTorch loads), whatever the arithmetic.
  const SafetensorsFile last = read_safetensors(bf16_dir.file("last.safetensors"));
  ASSERT_FALSE(last.tensors.empty());
  for (const NamedTensor& t : last.tensors) {
    if (t.name.ends_with("num_batches_tracked")) continue;  // an integer count
    EXPECT_EQ(t.tensor.dtype(), DType::f32) << t.name;
  }
}

TEST(AppTrainPrecision, UnknownPrecisionIsAConfigErrorNamingFileAndLine) {
  try {
    (void)parse_config("train:\n  precision: fp16\n", "bad.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "bad.yaml:2: train.precision: expected one of fp32, tf32, bf16, got 'fp16'");
  }
}

}  // namespace
}  // namespace convnet
