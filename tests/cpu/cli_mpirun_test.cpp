// `convnet train` under a real MPI launcher (Open MPI's mpirun, 2 ranks on this machine): the
// ranks train the single-process model, runs are bit-identical, checkpoints move between 1 and 2
// ranks, and faults end the whole job quickly with the reason: a config that differs between
// ranks, a rank that is killed. Skipped (with the reason) in a build without MPI.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "tests/common/app_test_util.h"
#include "tests/common/cli_runner.h"
#include "tests/common/data_parallel_config.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::expect_close_checkpoints;
using testing::expect_same_checkpoint;
using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;

#ifdef CONVNET_MPIEXEC
// --oversubscribe: 2 ranks on a machine Open MPI counts fewer slots on; --allow-run-as-root: CI
// runs as root; no single-copy shared memory (containers often forbid the ptrace it needs).
const std::string kMpirun = std::string("OMPI_MCA_btl_vader_single_copy_mechanism=none ") + CONVNET_MPIEXEC +
                            " --oversubscribe --allow-run-as-root -np ";
#endif

class CliMpirun : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef CONVNET_MPIEXEC
    GTEST_SKIP() << "this build has no MPI (install libopenmpi-dev openmpi-bin and rebuild)";
#endif
    testing::write_file(config_, testing::kDataParallelConfig);
  }
  // `convnet train CONFIG ARGS` on `ranks` ranks (0: without mpirun).
  RunResult train(int ranks, const std::string& args) {
    const std::string command = "train " + config_ + " " + args;
#ifdef CONVNET_MPIEXEC
    if (ranks > 0) return testing::run_program(kMpirun + std::to_string(ranks) + " " + CONVNET_BINARY, command);
#endif
    (void)ranks;
    return run_convnet(command);
  }
  std::string out(const std::string& run) const {
    return dir_.file(run);
  }
  std::string last(const std::string& run) const {
    return dir_.file(run + "/last.safetensors");
  }

  TempDir dir_;
  std::string config_ = dir_.file("dp.yaml");
};

TEST_F(CliMpirun, TwoRanksTrainTheSingleProcessModelAndRepeatBitForBit) {
  ASSERT_EQ(train(0, "--set output.dir=" + out("one")).exit_code, 0);
  const RunResult a = train(2, "--set output.dir=" + out("a"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_NE(a.err.find("data-parallel: 2 ranks over mpi"), std::string::npos) << a.err;
  ASSERT_EQ(train(2, "--set output.dir=" + out("b")).exit_code, 0);
  expect_close_checkpoints(last("one"), last("a"), 1e-5);
  expect_same_checkpoint(last("a"), last("b"));
}

TEST_F(CliMpirun, SyncBatchNormOnTwoAndFourRanksTrainsTheSingleProcessModel) {
  const std::string bn = " --set model.batch_norm=true --set model.sync_batch_norm=true --set train.max_steps=32";
  ASSERT_EQ(train(0, "--set output.dir=" + out("one") + bn).exit_code, 0);
  const RunResult r = train(2, "--set output.dir=" + out("two") + bn);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("model.sync_batch_norm: 2 batchnorm layers use the statistics of all 2 ranks"),
            std::string::npos)
      << r.err;
  ASSERT_EQ(train(4, "--set output.dir=" + out("four") + bn).exit_code, 0);
  expect_close_checkpoints(last("one"), last("two"), 1e-5);
  expect_close_checkpoints(last("one"), last("four"), 1e-5);
}

TEST_F(CliMpirun, CheckpointsResumeFromTwoRanksOnOneAndBack) {
  ASSERT_EQ(train(0, "--set output.dir=" + out("straight")).exit_code, 0);
  ASSERT_EQ(train(2, "--set output.dir=" + out("x") + " --set train.max_steps=10").exit_code, 0);
  ASSERT_EQ(train(0, "--set output.dir=" + out("x") + " --resume " + last("x")).exit_code, 0);
  expect_close_checkpoints(last("straight"), last("x"), 1e-5);
  ASSERT_EQ(train(0, "--set output.dir=" + out("y") + " --set train.max_steps=10").exit_code, 0);
  const RunResult r = train(2, "--set output.dir=" + out("y") + " --resume " + last("y"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_close_checkpoints(last("straight"), last("y"), 1e-5);
}

#ifdef CONVNET_MPIEXEC
// Runs `convnet train` on 2 ranks through `sh -c SCRIPT`, where the script sees $CONVNET and
// $CONFIG, and measures how long the job took.
RunResult train_with_script(const std::string& script, const std::string& config, double& seconds) {
  const auto start = std::chrono::steady_clock::now();
  const RunResult r = testing::run_program(
      "CONVNET=" + std::string(CONVNET_BINARY) + " CONFIG=" + config + " " + kMpirun + "2 sh -c", "'" + script + "'");
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

TEST_F(CliMpirun, AConfigThatDiffersOnOneRankStopsTheJobNamingIt) {
  double seconds = 0;
  const RunResult r = train_with_script(
      "exec $CONVNET train $CONFIG --set output.dir=" + out("z") + " --set train.seed=$((5 + OMPI_COMM_WORLD_RANK))",
      config_, seconds);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the config of rank 1 differs from rank 0's"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("seed: 6' here, '  seed: 5' on rank 0"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 30);
  EXPECT_FALSE(std::filesystem::exists(last("z")));
}

// A run of minutes on 2 ranks whose rank 1 receives `signal` (a kill(1) name) after 3 s; the job
// must end with an error within 30 s.
RunResult long_run_signalling_rank_one(const std::string& signal, const std::string& config, const std::string& out_dir,
                                       const std::string& extra = "") {
  double seconds = 0;
  const RunResult r = train_with_script("if [ $OMPI_COMM_WORLD_RANK = 1 ]; then (sleep 3; kill -" + signal +
                                            " $$) & fi; exec $CONVNET train $CONFIG --set output.dir=" + out_dir +
                                            " --set train.max_steps=0 --set train.epochs=1000" + extra,
                                        config, seconds);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(seconds, 30);
  return r;
}

TEST_F(CliMpirun, AKilledRankEndsTheJobWithinSeconds) {
  // SIGKILL: no chance to say goodbye; the launcher notices.
  const RunResult r = long_run_signalling_rank_one("KILL", config_, out("k"));
  const std::string all = r.out + r.err;
  EXPECT_NE(all.find("rank 1"), std::string::npos) << all;
  EXPECT_NE(all.find("signal 9"), std::string::npos) << all;
}

TEST_F(CliMpirun, ARankThatHangsEndsTheJobAfterTheTimeoutNamingTheCollective) {
  // SIGSTOP: alive, so mpirun sees nothing wrong; rank 0 gives up after train.distributed_timeout.
  const RunResult r = long_run_signalling_rank_one("STOP", config_, out("h"), " --set train.distributed_timeout=2");
  EXPECT_NE(r.err.find("[rank 0/2]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did not complete within train.distributed_timeout (2 s): a rank died or hangs"),
            std::string::npos)
      << r.err;
}
#endif

}  // namespace
}  // namespace convnet
