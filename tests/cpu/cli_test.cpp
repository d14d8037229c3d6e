// The convnet executable: exit codes, messages, and the files and JSON each subcommand promises.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;

const char* kSyntheticConfig = R"(model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 256, synthetic_test_size: 64, synthetic_image_size: 8}
optimizer: {lr: 0.05}
train: {epochs: 2, batch_size: 32, seed: 1, threads: 2, log_every: 4}
)";

TEST(Cli, VersionAndHelp) {
  const RunResult v = run_convnet("--version");
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("convnet"), std::string::npos);
  const RunResult h = run_convnet("--help");
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("Examples"), std::string::npos);
  EXPECT_NE(h.out.find("benchmark"), std::string::npos);
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run_convnet("").exit_code, 2);
  EXPECT_EQ(run_convnet("frobnicate").exit_code, 2);
  EXPECT_EQ(run_convnet("train /no/such/config.yaml").exit_code, 2);
  EXPECT_EQ(run_convnet("evaluate /no/such/checkpoint.safetensors").exit_code, 2);
}

TEST(Cli, ConfigErrorNamesFileLineAndKeyAndExitsWithTwo) {
  TempDir dir;
  write_file(dir.file("bad.yaml"), "model: {name: vgg11}\ntrain:\n  epochs: 2\n  batch_sise: 64\n");
  const RunResult r = run_convnet("train " + dir.file("bad.yaml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.yaml:4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("batch_sise"), std::string::npos) << r.err;
  const RunResult s = run_convnet("train " + dir.file("bad.yaml") + " --set train.batch_sise=3");
  EXPECT_EQ(s.exit_code, 2);
}

TEST(Cli, ModelThatDoesNotFitTheInputNamesTheLayer) {
  TempDir dir;
  // 32x32 -> conv 3x3 -> 30x30 -> pool 16 -> 1x1: too small for conv5's unpadded 3x3 kernel.
  write_file(dir.file("deep.yaml"), R"(model:
  name: sequential
  layers:
    - {type: conv, out_channels: 8, kernel: 3}
    - {type: max_pool, kernel: 16}
    - {type: conv, out_channels: 8, kernel: 3, name: conv5}
)");
  const RunResult r = run_convnet("train " + dir.file("deep.yaml") + " --dry-run");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("conv5: input 1x1 is smaller than the 3x3 kernel"), std::string::npos) << r.err;
}

TEST(Cli, GroupsThatDoNotDivideTheInputNameTheLayer) {
  TempDir dir;
  // The RGB input has 3 channels: 2 groups do not divide them (out_channels 8 alone would fit).
  write_file(dir.file("groups.yaml"), R"(model:
  name: sequential
  layers:
    - {type: conv, out_channels: 8, padding: 1, groups: 2, name: stem}
)");
  const RunResult r = run_convnet("train " + dir.file("groups.yaml") + " --dry-run");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("stem: groups 2 does not divide the 3 input channels"), std::string::npos) << r.err;
}

TEST(Cli, DryRunShowsGroupedAndDepthwiseConvs) {
  TempDir dir;
  write_file(dir.file("dw.yaml"), R"(model:
  name: sequential
  layers:
    - {type: conv, out_channels: 16, padding: 1}
    - {type: conv, out_channels: 32, padding: 1, groups: 16}
    - {type: conv, out_channels: 8, kernel: 1, groups: 4}
)");
  const RunResult r = run_convnet("train " + dir.file("dw.yaml") + " --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string text = r.out + r.err;
  EXPECT_NE(text.find("conv2d 3x3 16->32 s1 p1 depthwise"), std::string::npos) << text;
  EXPECT_NE(text.find("conv2d 1x1 32->8 s1 p0 g4"), std::string::npos) << text;
}

TEST(Cli, DryRunJsonReportsParametersAndFlopsOfVgg11) {
  const RunResult r =
      run_convnet(std::string("train ") + CONVNET_SOURCE_DIR + "/configs/vgg11_bn.yaml --dry-run --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  // VGG-11-BN for CIFAR-10: the common PyTorch version has 9,231,114 parameters, of which 2,752
  // are conv biases that BN makes redundant (convnet leaves them out): 9,228,362. Forward cost
  // 0.306 GFLOPs per image (FIELD-GUIDE §5).
  EXPECT_EQ(j.at("params").get<int64_t>(), 9228362);
  EXPECT_NEAR(j.at("flops_per_example").get<double>(), 0.306e9, 0.01e9);
  EXPECT_FALSE(j.at("layers").empty());
}

// In bf16 precision the conv outputs a batchnorm reads and the relus a conv reads are stored bf16:
// VGG-11 has 8 and 3 (the second conv of its last three stages reads one), marked in the JSON and
// the table, and the outputs take less memory than in fp32.
TEST(Cli, DryRunMarksTheOutputsStoredInBf16) {
  const std::string command = std::string("train ") + CONVNET_SOURCE_DIR + "/configs/vgg11_bn.yaml --dry-run";
  int64_t output_bytes[2] = {};
  for (const bool bf16 : {false, true}) {
    const RunResult r = run_convnet(command + " --json" + (bf16 ? " --set train.precision=bf16" : ""));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    std::vector<std::string> stored;
    for (const auto& layer : j.at("layers"))
      if (layer.at("output_dtype") == "bf16") stored.push_back(layer.at("name"));
    EXPECT_EQ(stored.size(), bf16 ? 11u : 0u) << ::testing::PrintToString(stored);
    output_bytes[bf16] = j.at("activation_bytes").at("outputs").get<int64_t>();
  }
  EXPECT_LT(output_bytes[1], output_bytes[0]);
  const RunResult text = run_convnet(command + " --set train.precision=bf16");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("bf16: an output stored in bf16"), std::string::npos) << text.out;
}

// fast96 is a DAG: the JSON names each merge's inputs, the receptive fields, and the activation
// memory at the config's batch size.
TEST(Cli, DryRunJsonDescribesTheGraphOfFast96) {
  const RunResult r = run_convnet(std::string("train ") + CONVNET_SOURCE_DIR + "/configs/fast96.yaml --dry-run --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("activation_bytes").at("batch").get<int64_t>(), 1024);
  EXPECT_GT(j.at("activation_bytes").at("gradients").get<int64_t>(), 0);
  const auto& memory = j.at("activation_bytes");
  EXPECT_GT(memory.at("layer_state").get<int64_t>(), 0);  // fast96's max pools keep their argmax
  EXPECT_EQ(memory.at("total").get<int64_t>(), memory.at("outputs").get<int64_t>() +
                                                   memory.at("gradients").get<int64_t>() +
                                                   memory.at("layer_state").get<int64_t>());
  int merges = 0, first_whole = 0;
  for (const auto& layer : j.at("layers")) {
    if (layer.at("name") == "add1") {
      EXPECT_EQ(layer.at("inputs"), nlohmann::json({"batch_norm3", "g1_x0"}));
    }
    merges += layer.at("inputs").size() == 2;
    if (layer.at("receptive_field").at("first_whole").get<bool>()) {
      ++first_whole;
      EXPECT_EQ(layer.at("name"), "conv7");  // 35 px at jump 4: the first field wider than 32
      EXPECT_EQ(layer.at("receptive_field").at("size"), nlohmann::json({35, 35}));
    }
  }
  EXPECT_EQ(merges, 3);
  EXPECT_EQ(first_whole, 1);
}

TEST(Cli, TrainEvaluateInfoOnSyntheticData) {
  TempDir dir;
  write_file(dir.file("syn.yaml"), kSyntheticConfig);
  const RunResult t = run_convnet("train " + dir.file("syn.yaml") + " --set output.dir=" + dir.file("run"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const char* f : {"last.safetensors", "best.safetensors", "config.yaml", "metrics.jsonl", "curves.svg"})
    EXPECT_TRUE(std::filesystem::exists(dir.file("run/") + f)) << f;
  std::ifstream metrics(dir.file("run/metrics.jsonl"));
  std::string line;
  int train_lines = 0, test_lines = 0;
  while (std::getline(metrics, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("split") == "train") {
      ++train_lines;
      for (const char* key : {"step", "epoch", "lr", "loss", "accuracy", "images_per_sec"})
        EXPECT_TRUE(j.contains(key)) << key;
    } else {
      ++test_lines;
    }
  }
  EXPECT_GT(train_lines, 0);
  EXPECT_EQ(test_lines, 2);

  const RunResult e = run_convnet("evaluate " + dir.file("run/best.safetensors") + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j.at("num_examples").get<int64_t>(), 64);
  EXPECT_EQ(j.at("per_class_accuracy").size(), 10u);
  EXPECT_EQ(j.at("confusion_matrix").size(), 10u);
  int64_t total = 0;
  for (const auto& row : j.at("confusion_matrix"))
    for (const auto& v : row) total += v.get<int64_t>();
  EXPECT_EQ(total, 64);
  EXPECT_GE(j.at("accuracy").get<double>(), 0.0);
  EXPECT_TRUE(j.contains("loss"));

  const RunResult i = run_convnet("info " + dir.file("run/last.safetensors") + " --json");
  ASSERT_EQ(i.exit_code, 0) << i.err;
  const auto ij = nlohmann::json::parse(i.out);
  EXPECT_EQ(ij.at("step").get<int64_t>(), 2 * 256 / 32);
  EXPECT_FALSE(ij.at("tensors").empty());
}

TEST(Cli, BenchmarkJsonListsEveryLayerPassSlowestFirst) {
  TempDir dir;
  write_file(dir.file("syn.yaml"), kSyntheticConfig);
  const RunResult r = run_convnet("benchmark " + dir.file("syn.yaml") + " --repeats 3 --batch-size 8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("backend"), "cpu");
  EXPECT_EQ(j.at("batch_size").get<int>(), 8);
  const auto& layers = j.at("layers");
  // Two convs with three passes each; every other layer has forward and backward.
  int conv_passes = 0;
  double previous = 1e300;
  for (const auto& row : layers) {
    const double median = row.at("median_ms").get<double>();
    EXPECT_LE(median, previous);
    EXPECT_LE(row.at("min_ms").get<double>(), median);
    EXPECT_GE(row.at("max_ms").get<double>(), median);
    previous = median;
    if (row.contains("gemm_gflops_per_sec")) {
      ++conv_passes;
      EXPECT_GT(row.at("gflops_per_sec").get<double>(), 0.0);
    }
  }
  EXPECT_EQ(conv_passes, 6);
  EXPECT_GT(j.at("train_step").at("images_per_sec").get<double>(), 0.0);
  EXPECT_GT(j.at("convolution").at("ratio_to_gemm").get<double>(), 0.0);
}

TEST(Cli, CorruptCheckpointIsARuntimeError) {
  TempDir dir;
  write_file(dir.file("junk.safetensors"), "this is not a safetensors file at all");
  const RunResult r = run_convnet("evaluate " + dir.file("junk.safetensors"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("junk.safetensors"), std::string::npos) << r.err;
}

TEST(Cli, SigintWritesLastCheckpointThatResumes) {
  TempDir dir;
  write_file(dir.file("syn.yaml"), kSyntheticConfig);
  const std::string out = dir.file("run");
  const std::string args = dir.file("syn.yaml") + " --set output.dir=" + out + " --set train.epochs=200";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string log = dir.file("child.log");
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(CONVNET_BINARY, CONVNET_BINARY, "train", dir.file("syn.yaml").c_str(), "--set", ("output.dir=" + out).c_str(),
          "--set", "train.epochs=200", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training has written its first epoch, then interrupt it.
  for (int i = 0; i < 600 && !std::filesystem::exists(out + "/last.safetensors"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT) << read_file(dir.file("child.log"));
  EXPECT_NE(read_file(dir.file("child.log")).find("signal"), std::string::npos);
  // The checkpoint is valid, and training resumes from it.
  const RunResult info = run_convnet("info " + out + "/last.safetensors --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const int64_t step = nlohmann::json::parse(info.out).at("step").get<int64_t>();
  EXPECT_GT(step, 0);
  const RunResult resumed = run_convnet("train " + args + " --resume " + out + "/last.safetensors" +
                                        " --set train.max_steps=" + std::to_string(step + 3));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const RunResult after = run_convnet("info " + out + "/last.safetensors --json");
  EXPECT_EQ(nlohmann::json::parse(after.out).at("step").get<int64_t>(), step + 3);
}

}  // namespace
}  // namespace convnet
