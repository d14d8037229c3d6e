// Command-line mistakes a hostile user trial found: each is a usage error (exit 2) that names the
// flag the user typed and a sensible range or list, and a model too large for the machine stops
// before allocating.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"
#include "tools/commands.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;

const char* kTinyConfig = R"(model: {name: vgg, cfg: [8, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 64, synthetic_test_size: 32, synthetic_image_size: 8}
train: {epochs: 1, batch_size: 16, seed: 1, threads: 1, max_steps: 2}
)";

::testing::AssertionResult usage_error(const RunResult& r, const std::string& expected) {
  if (r.exit_code == 2 && (r.err + r.out).find(expected) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "exit " << r.exit_code << "\nstderr: " << r.err << "\nexpected: " << expected;
}

TEST(CliHardening, BatchSizeZeroPrintsTheRange) {
  const RunResult r = run_convnet("benchmark --batch-size 0");
  EXPECT_TRUE(usage_error(r, "--batch-size: Value 0 not in range 1 to 65536"));
  EXPECT_LT(r.err.size(), 200u) << r.err;
}

TEST(CliHardening, UnknownLogLevelListsTheLevels) {
  EXPECT_TRUE(usage_error(run_convnet("--log-level loud --version"),
                          "--log-level: loud not in {trace,debug,info,warn,error,off}"));
}

TEST(CliHardening, JsonWithoutDryRunIsAnError) {
  TempDir dir;
  write_file(dir.file("c.yaml"), kTinyConfig);
  EXPECT_TRUE(usage_error(run_convnet("train " + dir.file("c.yaml") + " --json --set output.dir=" + dir.file("run")),
                          "--json requires --dry-run"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("run")));
}

TEST(CliHardening, ConfigThatIsAFifoIsRefusedNotWaitedOn) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  EXPECT_TRUE(usage_error(run_convnet("train " + dir.file("fifo") + " --dry-run"),
                          "is a FIFO (named pipe), expected a regular file"));
}

TEST(CliHardening, ModelTooLargeForTheMachineStopsBeforeAllocating) {
  TempDir dir;
  write_file(dir.file("c.yaml"), "model: {name: vgg, cfg: [65536, M]}\ntrain: {batch_size: 65536}\n");
  const RunResult r = run_convnet("train " + dir.file("c.yaml") + " --dry-run");
  EXPECT_TRUE(usage_error(r, "c.yaml: model vgg at train.batch_size 65536 needs about"));
  EXPECT_NE(r.err.find("of host memory"), std::string::npos) << r.err;
}

TEST(CliHardening, EvaluateNamesTheFlagTypedAndTtaTakesNoValue) {
  TempDir dir;
  write_file(dir.file("c.yaml"), kTinyConfig);
  const RunResult t = run_convnet("train " + dir.file("c.yaml") + " --set output.dir=" + dir.file("run"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string last = dir.file("run/last.safetensors");

  const RunResult b = run_convnet("evaluate " + last + " --backend tpu");
  EXPECT_TRUE(usage_error(b, "--backend: tpu not in {cpu,cuda,cuda_tf32,cudnn,cudnn_tf32,auto}"));
  EXPECT_EQ(b.err.find("--set"), std::string::npos) << b.err;

  // --tta alone on a checkpoint trained with train.tta none: flip_translate.
  const RunResult e = run_convnet("evaluate " + last + " --tta --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out).at("tta"), "flip_translate");
}

TEST(CliHardening, EvaluateTtaChoosesFromTheFlagAndTheCheckpoint) {
  cli::EvaluateOptions o;
  EXPECT_EQ(cli::evaluate_tta(o, "flip"), "flip");  // not given: the checkpoint's
  EXPECT_EQ(cli::evaluate_tta(o, "none"), "none");
  o.tta_given = true;  // --tta alone
  EXPECT_EQ(cli::evaluate_tta(o, "flip"), "flip");
  EXPECT_EQ(cli::evaluate_tta(o, "none"), "flip_translate");
  o.tta = "none";  // --tta none
  EXPECT_EQ(cli::evaluate_tta(o, "flip"), "none");
}

}  // namespace
}  // namespace convnet
