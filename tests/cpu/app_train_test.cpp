// End-to-end training through the same wiring as `convnet train`: learning, determinism, exact
// resume, NaN handling, checkpoint layout.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "tests/common/app_test_util.h"
#include "tests/common/test_util.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::expect_same_checkpoint;
using testing::TempDir;
using testing::train;

// A small VGG-style net on the synthetic data set; trains in about a second on 2 cores.
Config small_config(const std::string& out_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"output.dir=" + out_dir};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_config(R"(
model: {name: vgg, cfg: [8, M, 16, M, 32, M], batch_norm: true, pool: avg}
data:
  dataset: synthetic
  synthetic_train_size: 1024
  synthetic_test_size: 256
  synthetic_image_size: 16
  workers: 2
  augment: {crop_padding: 1, flip: true}
optimizer: {lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
schedule: {name: linear, warmup_epochs: 0.5}
train: {epochs: 4, batch_size: 32, seed: 7, log_every: 8, threads: 2}
output: {plot: svg}
)",
                      "small.yaml", overrides);
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

TEST(AppTrain, SmallVggLearnsSyntheticDataAbove95Percent) {
  TempDir dir;
  const TrainResult r = train(small_config(dir.path()));
  EXPECT_EQ(r.steps, 4 * (1024 / 32));
  EXPECT_GT(r.final_test_accuracy, 0.95);
  for (const char* f : {"last.safetensors", "best.safetensors", "config.yaml", "metrics.jsonl", "curves.svg"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(f))) << f;
  // The saved effective config parses back to the same run.
  EXPECT_EQ(to_yaml(load_config(dir.file("config.yaml"))), to_yaml(small_config(dir.path())));
}

TEST(AppTrain, SameConfigAndSeedGiveBitIdenticalRuns) {
  TempDir a, b;
  train(small_config(a.path(), {"train.max_steps=20"}));
  train(small_config(b.path(), {"train.max_steps=20"}));
  expect_same_checkpoint(a.file("last.safetensors"), b.file("last.safetensors"));
}

TEST(AppTrain, ResumeMidEpochEqualsUninterruptedRun) {
  // 2N steps straight vs N steps + save + resume + N steps; N = 45 ends inside epoch 2.
  TempDir straight, split;
  train(small_config(straight.path(), {"train.max_steps=90"}));
  const TrainResult first = train(small_config(split.path(), {"train.max_steps=45"}));
  EXPECT_EQ(first.steps, 45);
  const TrainResult second = train(small_config(split.path(), {"train.max_steps=90"}), split.file("last.safetensors"));
  EXPECT_EQ(second.steps, 90);
  expect_same_checkpoint(straight.file("last.safetensors"), split.file("last.safetensors"));
}

TEST(AppTrain, ResumeAppendsToMetrics) {
  TempDir dir;
  train(small_config(dir.path(), {"train.max_steps=16"}));
  const size_t before = count_lines(dir.file("metrics.jsonl"));
  EXPECT_EQ(before, 2u);  // steps 8 and 16
  train(small_config(dir.path(), {"train.max_steps=32"}), dir.file("last.safetensors"));
  EXPECT_EQ(count_lines(dir.file("metrics.jsonl")), before + 3);  // 24, 32 (end of epoch 1) + the test line
}

TEST(AppTrain, NanLossStopsWithClearErrorAndKeepsLastGoodCheckpoint) {
  TempDir dir;
  train(small_config(dir.path(), {"train.epochs=1"}));
  const std::string last = dir.file("last.safetensors");
  const std::string good = testing::read_file(last);
  try {
    train(small_config(dir.path(), {"train.epochs=2", "optimizer.lr=1e30", "schedule.warmup_epochs=0"}), last);
    FAIL() << "expected a NaN/Inf loss error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the loss is"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("last good checkpoint"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::read_file(last), good);
}

TEST(AppTrain, ResumeOnDifferentDataIsAnError) {
  TempDir dir;
  train(small_config(dir.path(), {"train.max_steps=4"}));
  try {
    train(small_config(dir.path(), {"train.max_steps=8", "data.synthetic_train_size=1056"}),
          dir.file("last.safetensors"));
    FAIL() << "expected a data mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different data"), std::string::npos) << e.what();
  }
}

TEST(AppTrain, ResumeWithAnotherModelNamesTheTensor) {
  TempDir dir;
  train(small_config(dir.path(), {"train.max_steps=2"}));
  try {
    train(small_config(dir.path(), {"train.max_steps=4", "model.cfg=[8, M, 24, M, 32, M]"}),
          dir.file("last.safetensors"));
    FAIL() << "expected a shape mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("features.4.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace convnet
