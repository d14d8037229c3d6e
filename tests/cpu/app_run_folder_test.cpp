// The output folder of `convnet train`'s wiring: metrics.jsonl gets a training line at every
// epoch's end and lr on test lines; a resume drops the lines logged after its checkpoint (a
// killed run's), including the evaluation of an epoch ending still to come; a fresh run refuses
// a folder holding a run unless told to overwrite it.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/train/metrics_log.h"
#include "tests/common/test_util.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::TempDir;

// 8 steps per epoch, fewer than log_every.
Config tiny_config(const std::string& out_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"output.dir=" + out_dir};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_config(R"(
model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 256, synthetic_test_size: 64, synthetic_image_size: 8}
optimizer: {lr: 0.05}
train: {epochs: 2, batch_size: 32, seed: 3, threads: 2, log_every: 50}
)",
                      "tiny.yaml", overrides);
}

TrainResult train(const Config& c, const std::string& resume = "", bool overwrite = false) {
  cli::TrainStart start;
  start.resume = resume;
  start.overwrite = overwrite;
  return cli::run_training(c, to_yaml(c), start);
}

using Keys = std::vector<std::pair<std::string, int64_t>>;  // (split, step) of every line, in order

Keys metrics_keys(const std::string& dir) {
  Keys out;
  for (const MetricsRecord& r : read_metrics(dir + "/metrics.jsonl")) out.emplace_back(r.split, r.step);
  return out;
}

TEST(AppRunFolder, EveryEpochEndHasATrainingLineAndTestLinesCarryLr) {
  TempDir dir;
  train(tiny_config(dir.path()));
  EXPECT_EQ(metrics_keys(dir.path()), (Keys{{"train", 8}, {"test", 8}, {"train", 16}, {"test", 16}}));
  const std::vector<MetricsRecord> rows = read_metrics(dir.file("metrics.jsonl"));
  EXPECT_GT(rows[1].lr, 0.0);
  EXPECT_EQ(rows[1].lr, rows[0].lr) << "a test line has the lr of the step before it";
  EXPECT_NE(read_file(dir.file("curves.svg")).find("train loss"), std::string::npos);
}

TEST(AppRunFolder, ResumeDropsWhatAKilledRunLoggedAfterTheCheckpoint) {
  TempDir dir;
  train(tiny_config(dir.path(), {"train.log_every=4", "train.max_steps=10"}));
  EXPECT_EQ(metrics_keys(dir.path()), (Keys{{"train", 4}, {"train", 8}, {"test", 8}, {"train", 10}}));
  {  // what a run killed after step 14 would have left, the last line cut off
    std::ofstream out(dir.file("metrics.jsonl"), std::ios::app);
    out << R"({"split":"train","step":12,"epoch":1.5,"lr":0.01,"loss":2,"accuracy":0.1,"images_per_sec":1})"
        << "\n"
        << R"({"split":"train","step":14,"epoch":1.75,"lr":0.01,"loss":2,"acc)";
  }
  train(tiny_config(dir.path(), {"train.log_every=4"}), dir.file("last.safetensors"));
  EXPECT_EQ(metrics_keys(dir.path()),
            (Keys{{"train", 4}, {"train", 8}, {"test", 8}, {"train", 10}, {"train", 12}, {"train", 16}, {"test", 16}}));
}

TEST(AppRunFolder, ResumeBeforeAnEpochEndingEvaluatesOnceMore) {
  // The checkpoint at step 8 is written before epoch 1's evaluation (checkpoint_every), and
  // save_each_epoch false writes none after it: the resumed run evaluates epoch 1 again.
  TempDir dir;
  const std::vector<std::string> first = {"train.checkpoint_every=8", "train.save_each_epoch=false",
                                          "train.max_steps=8"};
  train(tiny_config(dir.path(), first));
  EXPECT_EQ(metrics_keys(dir.path()), (Keys{{"train", 8}, {"test", 8}}));
  train(tiny_config(dir.path()), dir.file("last.safetensors"));
  EXPECT_EQ(metrics_keys(dir.path()), (Keys{{"train", 8}, {"test", 8}, {"train", 16}, {"test", 16}}));
}

TEST(AppRunFolder, AFreshRunRefusesAFolderHoldingARunUnlessOverwriting) {
  TempDir dir;
  train(tiny_config(dir.path(), {"train.max_steps=3"}));
  const Keys before = metrics_keys(dir.path());
  try {
    train(tiny_config(dir.path(), {"train.max_steps=3"}));
    FAIL() << "a second fresh run was let into the folder";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run"), std::string::npos) << e.what();
  }
  EXPECT_EQ(metrics_keys(dir.path()), before);
  train(tiny_config(dir.path(), {"train.max_steps=5"}), "", true);
  EXPECT_EQ(metrics_keys(dir.path()), (Keys{{"train", 5}})) << "the old run's lines are gone";
}

}  // namespace
}  // namespace convnet
