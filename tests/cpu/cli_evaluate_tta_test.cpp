// `convnet evaluate --tta`: the default comes from the checkpoint's train.tta, the mode is in the
// text and JSON output, a bad value is a usage error; with ema.mode ema the evaluated model is
// the average the trainer evaluated.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;

const char* kConfig = R"(model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 256, synthetic_test_size: 64, synthetic_image_size: 8}
optimizer: {lr: 0.05}
ema: {mode: ema, every: 1, decay: 0.9}
train: {epochs: 1.5, batch_size: 32, seed: 1, threads: 2, log_every: 4, tta: flip}
)";

// The loss of the last "test" line of metrics.jsonl.
double last_test_loss(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  double loss = -1;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("split") == "test") loss = j.at("loss").get<double>();
  }
  return loss;
}

TEST(CliEvaluateTta, DefaultFromTheCheckpointOverrideAndBadValue) {
  TempDir dir;
  write_file(dir.file("syn.yaml"), kConfig);
  const RunResult t = run_convnet("train " + dir.file("syn.yaml") + " --set output.dir=" + dir.file("run"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string last = dir.file("run/last.safetensors");

  // The trainer's final evaluation (averaged weights, flip TTA) and `convnet evaluate` agree.
  const RunResult d = run_convnet("evaluate " + last + " --json");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const auto dj = nlohmann::json::parse(d.out);
  EXPECT_EQ(dj.at("tta"), "flip");
  EXPECT_NEAR(dj.at("loss").get<double>(), last_test_loss(dir.file("run/metrics.jsonl")), 1e-6);

  const RunResult none = run_convnet("evaluate " + last + " --tta none --json");
  ASSERT_EQ(none.exit_code, 0) << none.err;
  const auto nj = nlohmann::json::parse(none.out);
  EXPECT_EQ(nj.at("tta"), "none");
  EXPECT_NE(nj.at("loss").get<double>(), dj.at("loss").get<double>());
  EXPECT_EQ(nj.at("num_examples").get<int64_t>(), 64);

  const RunResult text = run_convnet("evaluate " + last + " --tta flip_translate");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("TTA flip_translate"), std::string::npos) << text.out;

  const RunResult bad = run_convnet("evaluate " + last + " --tta mirror");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE((bad.out + bad.err).find("mirror"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace convnet
