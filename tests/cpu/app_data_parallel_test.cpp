// Data-parallel training through `convnet train`'s wiring, with the ranks as threads of this
// process (tests/common/thread_group.h): N ranks train the model one process trains with the same
// global batch; runs are bit-identical; checkpoints resume on another number of ranks; a config
// that differs between ranks, or a batch that does not split, stops every rank with the reason.
// tests/cpu/cli_mpirun_test.cpp runs the same under a real mpirun.
#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tests/common/app_test_util.h"
#include "tests/common/data_parallel_config.h"
#include "tests/common/test_util.h"
#include "tests/common/thread_group.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::expect_close_checkpoints;
using testing::expect_same_checkpoint;
using testing::run_ranks;
using testing::TempDir;

Config dp_config(const std::string& out_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {"output.dir=" + out_dir};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_config(testing::kDataParallelConfig, "dp.yaml", overrides);
}

// Trains `config` on `ranks` thread-ranks; returns rank 0's result.
TrainResult train_on_ranks(int ranks, const Config& config, const std::string& resume = "") {
  TrainResult root;
  run_ranks(ranks, [&](ReplicaGroup& group) {
    cli::TrainStart start;
    start.resume = resume;
    const TrainResult r = cli::run_training(config, to_yaml(config), start, group);
    if (group.rank() == 0) root = r;
  });
  return root;
}

TEST(AppDataParallel, TwoAndFourRanksTrainTheSingleProcessModel) {
  TempDir one, two, four;
  const TrainResult r1 = train_on_ranks(1, dp_config(one.path(), {"train.epochs=2", "train.max_steps=40"}));
  const TrainResult r2 = train_on_ranks(2, dp_config(two.path(), {"train.epochs=2", "train.max_steps=40"}));
  const TrainResult r4 = train_on_ranks(4, dp_config(four.path(), {"train.epochs=2", "train.max_steps=40"}));
  expect_close_checkpoints(one.file("last.safetensors"), two.file("last.safetensors"), 1e-5);
  expect_close_checkpoints(one.file("last.safetensors"), four.file("last.safetensors"), 1e-5);
  EXPECT_EQ(r2.steps, 40);
  EXPECT_NEAR(r2.last_train_loss, r1.last_train_loss, 1e-5 * r1.last_train_loss);
  // Evaluation is sharded (100 test images: the last batch of 4 splits unevenly, 1 per rank of 4)
  // and combined: the same accuracy as one process's.
  EXPECT_EQ(r2.final_test_accuracy, r1.final_test_accuracy);
  EXPECT_EQ(r4.final_test_accuracy, r1.final_test_accuracy);
}

TEST(AppDataParallel, TwoRankRunsAreBitIdentical) {
  TempDir a, b;
  train_on_ranks(2, dp_config(a.path()));
  train_on_ranks(2, dp_config(b.path()));
  expect_same_checkpoint(a.file("last.safetensors"), b.file("last.safetensors"));
}

TEST(AppDataParallel, OnlyRankZeroWritesOutputs) {
  TempDir one, two;
  train_on_ranks(1, dp_config(one.path()));
  train_on_ranks(2, dp_config(two.path()));
  // One metrics line per log_every steps, not one per rank.
  size_t lines_one = 0, lines_two = 0;
  for (char c : testing::read_file(one.file("metrics.jsonl"))) lines_one += c == '\n';
  for (char c : testing::read_file(two.file("metrics.jsonl"))) lines_two += c == '\n';
  EXPECT_EQ(lines_two, lines_one);
  EXPECT_GT(lines_two, 0u);
}

TEST(AppDataParallel, CheckpointsResumeOnAnotherNumberOfRanks) {
  TempDir straight, two_then_one, one_then_two;
  train_on_ranks(1, dp_config(straight.path()));
  // 10 steps on 2 ranks, the other 10 on 1; and the other way round.
  train_on_ranks(2, dp_config(two_then_one.path(), {"train.max_steps=10"}));
  train_on_ranks(1, dp_config(two_then_one.path()), two_then_one.file("last.safetensors"));
  train_on_ranks(1, dp_config(one_then_two.path(), {"train.max_steps=10"}));
  const TrainResult r = train_on_ranks(2, dp_config(one_then_two.path()), one_then_two.file("last.safetensors"));
  EXPECT_EQ(r.steps, 20);
  expect_close_checkpoints(straight.file("last.safetensors"), two_then_one.file("last.safetensors"), 1e-5);
  expect_close_checkpoints(straight.file("last.safetensors"), one_then_two.file("last.safetensors"), 1e-5);
}

TEST(AppDataParallel, BatchNormPerRankStatisticsTrainAndAgreeAcrossRanks) {
  // Default (per-rank statistics, as DDP): the ranks still keep identical weights, and the saved
  // and evaluated model is rank 0's.
  TempDir a, b;
  const TrainResult r = train_on_ranks(2, dp_config(a.path(), {"model.batch_norm=true", "train.max_steps=32"}));
  train_on_ranks(2, dp_config(b.path(), {"model.batch_norm=true", "train.max_steps=32"}));
  EXPECT_EQ(r.steps, 32);  // the whole epoch, then an evaluation
  EXPECT_GE(r.final_test_accuracy, 0.0);
  expect_same_checkpoint(a.file("last.safetensors"), b.file("last.safetensors"));
}

TEST(AppDataParallel, SyncBatchNormOnTwoRanksEqualsOneProcessBatchNorm) {
  // model.sync_batch_norm: the statistics of the whole global batch, so 2 ranks train what one
  // process trains, running statistics included (evaluated after the epoch too). Four ranks run
  // under mpirun in cli_mpirun_test.
  TempDir one, two;
  const std::vector<std::string> bn = {"model.batch_norm=true", "model.sync_batch_norm=true", "train.max_steps=32"};
  const TrainResult r1 = train_on_ranks(1, dp_config(one.path(), bn));
  const TrainResult r2 = train_on_ranks(2, dp_config(two.path(), bn));
  expect_close_checkpoints(one.file("last.safetensors"), two.file("last.safetensors"), 1e-5);
  EXPECT_EQ(r2.final_test_accuracy, r1.final_test_accuracy);
}

// Four ranks too, on a net without max pooling. With it, four thread-ranks drift from one process
// after about 11 of 32 steps: 1.8e-7 after 10 steps, 1.8e-4 after 12. That is a jump, not a growth:
// a max-pool window's winner flips on a difference at rounding level. The runs are deterministic
// (two four-rank runs give the same bits), so this is not a race. Without max pooling the four
// ranks stay within 6.3e-7 of one process over the 32 steps.
TEST(AppDataParallel, SyncBatchNormOnFourRanksEqualsOneProcessWithoutMaxPoolTies) {
  TempDir one, four;
  const std::vector<std::string> bn = {"model.batch_norm=true", "model.sync_batch_norm=true", "model.cfg=[8, 16]",
                                       "train.max_steps=32"};
  const TrainResult r1 = train_on_ranks(1, dp_config(one.path(), bn));
  const TrainResult r4 = train_on_ranks(4, dp_config(four.path(), bn));
  expect_close_checkpoints(one.file("last.safetensors"), four.file("last.safetensors"), 1e-5);
  EXPECT_EQ(r4.final_test_accuracy, r1.final_test_accuracy);
}

// Runs `body` on `ranks` thread-ranks and returns each rank's ConfigError message ("" if none).
std::vector<std::string> config_errors_on_ranks(int ranks, const std::function<void(ReplicaGroup&)>& body) {
  std::vector<std::string> errors(static_cast<size_t>(ranks));
  run_ranks(ranks, [&](ReplicaGroup& group) {
    try {
      body(group);
    } catch (const ConfigError& e) {
      errors[static_cast<size_t>(group.rank())] = e.what();
    }
  });
  return errors;
}

TEST(AppDataParallel, AConfigThatDiffersBetweenRanksStopsEveryRankNamingTheLine) {
  TempDir dir;
  const std::vector<std::string> errors = config_errors_on_ranks(3, [&](ReplicaGroup& group) {
    const Config c = dp_config(dir.path(), {group.rank() == 2 ? "train.seed=6" : "train.seed=5"});
    cli::run_training(c, to_yaml(c), {}, group);
  });
  EXPECT_NE(errors[0].find("the config of rank 2 differs from rank 0's"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("rank 2"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("'  seed: 6' here, '  seed: 5' on rank 0"), std::string::npos) << errors[2];
  EXPECT_FALSE(std::filesystem::exists(dir.file("last.safetensors")));
}

TEST(AppDataParallel, AGlobalBatchThatDoesNotSplitEvenlyIsAConfigError) {
  TempDir dir;
  const std::vector<std::string> errors = config_errors_on_ranks(3, [&](ReplicaGroup& group) {
    const Config c = dp_config(dir.path());  // batch 16 over 3 ranks
    cli::run_training(c, to_yaml(c), {}, group);
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("train.batch_size 16 does not split evenly over 3 ranks"), std::string::npos) << e;
}

}  // namespace
}  // namespace convnet
