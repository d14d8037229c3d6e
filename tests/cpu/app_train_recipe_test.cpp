// Training features of the airbench-style recipes end to end: fractional epochs (exact step count,
// the final evaluation and checkpoints), and exact resume with fractional epochs and with weight
// averaging (ema.mode ema and lookahead), including the averaged model in the checkpoints.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tests/common/app_test_util.h"
#include "tests/common/test_util.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::expect_same_checkpoint;
using testing::TempDir;
using testing::train;

// 256 synthetic images at batch 32: 8 steps per epoch.
Config recipe_config(const std::string& out_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"output.dir=" + out_dir};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_config(R"(
model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data:
  dataset: synthetic
  synthetic_train_size: 256
  synthetic_test_size: 64
  synthetic_image_size: 8
  workers: 2
  augment: {crop_padding: 1, flip: true}
optimizer: {lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
schedule: {name: linear, warmup_epochs: 0.5}
train: {epochs: 2.3, batch_size: 32, seed: 3, log_every: 4, threads: 2}
output: {plot: svg}
)",
                      "recipe.yaml", overrides);
}

// The "test" records of metrics.jsonl as (step, epoch) pairs.
std::vector<std::pair<int64_t, double>> test_records(const std::string& path) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("split") == "test") out.emplace_back(j.at("step").get<int64_t>(), j.at("epoch").get<double>());
  }
  return out;
}

TEST(AppTrainRecipe, FractionalEpochsRunCeilStepsAndFinishLikeAFullEpoch) {
  TempDir dir;
  const TrainResult r = train(recipe_config(dir.path()));  // ceil(2.3 * 8) = 19 steps
  EXPECT_EQ(r.steps, 19);
  EXPECT_FALSE(r.interrupted);
  EXPECT_GE(r.final_test_accuracy, 0.0);
  for (const char* f : {"last.safetensors", "best.safetensors", "curves.svg"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(f))) << f;
  const SafetensorsFile last = read_safetensors(dir.file("last.safetensors"));
  EXPECT_EQ(last.metadata.at("convnet.step"), "19");
  EXPECT_EQ(last.metadata.at("convnet.epoch"), "3");  // the run is complete
  EXPECT_EQ(last.metadata.at("convnet.batch_in_epoch"), "0");
  const auto tests = test_records(dir.file("metrics.jsonl"));
  ASSERT_EQ(tests.size(), 3u);
  EXPECT_EQ(tests[0], (std::pair<int64_t, double>{8, 1.0}));
  EXPECT_EQ(tests[1], (std::pair<int64_t, double>{16, 2.0}));
  EXPECT_EQ(tests[2], (std::pair<int64_t, double>{19, 19.0 / 8}));

  // Less than one epoch; and resuming a finished run does nothing more.
  TempDir short_dir;
  EXPECT_EQ(train(recipe_config(short_dir.path(), {"train.epochs=0.25"})).steps, 2);
  EXPECT_EQ(test_records(short_dir.file("metrics.jsonl")).size(), 1u);
  const TrainResult again =
      train(recipe_config(short_dir.path(), {"train.epochs=0.25"}), short_dir.file("last.safetensors"));
  EXPECT_EQ(again.steps, 2);
  EXPECT_EQ(test_records(short_dir.file("metrics.jsonl")).size(), 1u);
}

TEST(AppTrainRecipe, MaxStepsInsideTheFractionalEpochStopsWithoutFinishing) {
  TempDir dir;
  const TrainResult r = train(recipe_config(dir.path(), {"train.max_steps=17"}));
  EXPECT_EQ(r.steps, 17);
  const SafetensorsFile last = read_safetensors(dir.file("last.safetensors"));
  EXPECT_EQ(last.metadata.at("convnet.epoch"), "2");
  EXPECT_EQ(last.metadata.at("convnet.batch_in_epoch"), "1");
  EXPECT_EQ(test_records(dir.file("metrics.jsonl")).size(), 2u);  // no evaluation at step 17
}

// 19 steps straight vs `split` steps + save + resume; the resumed run finishes the partial epoch.
void check_resume(const std::vector<std::string>& extra, int64_t split) {
  TempDir straight, parted;
  const TrainResult full = train(recipe_config(straight.path(), extra));
  std::vector<std::string> first = extra;
  first.push_back("train.max_steps=" + std::to_string(split));
  EXPECT_EQ(train(recipe_config(parted.path(), first)).steps, split);
  const TrainResult rest = train(recipe_config(parted.path(), extra), parted.file("last.safetensors"));
  EXPECT_EQ(full.steps, 19);
  EXPECT_EQ(rest.steps, 19);
  EXPECT_EQ(rest.final_test_accuracy, full.final_test_accuracy);
  expect_same_checkpoint(straight.file("last.safetensors"), parted.file("last.safetensors"));
  expect_same_checkpoint(straight.file("best.safetensors"), parted.file("best.safetensors"));
}

TEST(AppTrainRecipe, ResumeInsideTheFractionalLastEpochIsExact) {
  check_resume({}, 17);
}

TEST(AppTrainRecipe, ResumeIsExactWithLookahead) {
  check_resume({"ema.mode=lookahead", "ema.every=3", "ema.decay=0.8", "ema.decay_power=2"}, 10);
}

TEST(AppTrainRecipe, ResumeIsExactWithEma) {
  check_resume({"ema.mode=ema", "ema.every=2", "ema.decay=0.7", "ema.decay_power=1"}, 11);
}

// bf16: the weights' bf16 copies are not in the checkpoint; the resumed run writes them from the
// fp32 weights, to the bits the uninterrupted run's update wrote.
TEST(AppTrainRecipe, ResumeIsExactInBf16WithLookahead) {
  check_resume({"train.precision=bf16", "ema.mode=lookahead", "ema.every=3", "ema.decay=0.8"}, 10);
}

TEST(AppTrainRecipe, FinalLookaheadWeightsAreTheAverage) {
  TempDir dir;
  train(recipe_config(dir.path(), {"ema.mode=lookahead", "ema.every=5", "ema.decay=0.8"}));  // 19 % 5 != 0
  const SafetensorsFile f = read_safetensors(dir.file("last.safetensors"));
  EXPECT_EQ(f.metadata.at("convnet.ema"), "lookahead");
  int averaged = 0;
  for (const NamedTensor& t : f.tensors) {
    if (t.name.rfind("ema.", 0) != 0) continue;
    const Tensor* model = f.find(t.name.substr(4));
    ASSERT_NE(model, nullptr) << t.name;
    EXPECT_EQ(0, std::memcmp(model->raw(), t.tensor.raw(), t.tensor.bytes())) << t.name;
    ++averaged;
  }
  EXPECT_GT(averaged, 0);
}

TEST(AppTrainRecipe, EmaCheckpointsHoldTheAverageAsTheModelAndTheRawWeightsApart) {
  TempDir dir;
  train(recipe_config(dir.path(), {"ema.mode=ema", "ema.every=1", "ema.decay=0.9"}));
  const SafetensorsFile f = read_safetensors(dir.file("last.safetensors"));
  EXPECT_EQ(f.metadata.at("convnet.ema"), "ema");
  const Tensor* model = f.find("features.0.weight");
  const Tensor* raw = f.find("raw.features.0.weight");
  ASSERT_TRUE(model && raw);
  EXPECT_NE(0, std::memcmp(model->raw(), raw->raw(), raw->bytes()));
  EXPECT_EQ(f.find("raw.features.1.num_batches_tracked"), nullptr);  // integers are not averaged
  EXPECT_NE(f.find("raw.features.1.running_var"), nullptr);
  // Resuming that run without averaging is refused with a reason.
  const std::string err =
      testing::error_of([&] { train(recipe_config(dir.path(), {"train.epochs=3"}), dir.file("last.safetensors")); });
  EXPECT_NE(err.find("ema.mode ema"), std::string::npos) << err;
}

TEST(AppTrainRecipe, ResumingWithEmaFromAPlainCheckpointIsAnError) {
  TempDir dir;
  train(recipe_config(dir.path(), {"train.max_steps=3"}));
  const std::string err = testing::error_of(
      [&] { train(recipe_config(dir.path(), {"ema.mode=lookahead"}), dir.file("last.safetensors")); });
  EXPECT_NE(err.find("no weight-average state"), std::string::npos) << err;
}

}  // namespace
}  // namespace convnet
