// convnet export --format onnx, checked by the real consumers: a checkpoint of the default model
// and one of fast94 (whitening conv, GELU, batchnorm after pooling, scaled logits) are exported,
// passed through onnx.checker, and run in ONNX Runtime on 256 test images, whose logits must match
// the model's own forward (what convnet evaluate computes) within 1e-4 relative; also with
// batchnorm folded into the convolutions. The Python side is tests/tools/onnx_consumer.py in the
// environment tools/onnx_venv.sh makes (CONVNET_ONNX_PYTHON, default build/onnx-venv/bin/python);
// without it, or without ONNX in the build, the test skips with the reason.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>

#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "datasets/augment.h"
#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"
#include "tools/onnx/onnx_export.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;

constexpr int64_t kImages = 256;

std::string onnx_python() {
  if (const char* p = std::getenv("CONVNET_ONNX_PYTHON")) return p;
  return std::string(CONVNET_SOURCE_DIR) + "/build/onnx-venv/bin/python";
}

std::string write_floats(const std::string& path, const float* values, int64_t count) {
  testing::write_file(
      path, std::string_view(reinterpret_cast<const char*>(values), static_cast<size_t>(count) * sizeof(float)));
  return path;
}

class CliExportOnnx : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cli::onnx_export_available()) GTEST_SKIP() << "this build has no ONNX (install libonnx-dev, rebuild)";
    if (!std::filesystem::exists(onnx_python()))
      GTEST_SKIP() << "no ONNX Runtime environment at " << onnx_python() << ": run tools/onnx_venv.sh";
  }

  // A checkpoint of `config` after a few steps on synthetic data (so batchnorm statistics and
  // weights are not at their initial values).
  std::string train(const std::string& config, const std::string& run) {
    const std::string out = dir_.file(run);
    const RunResult r = run_convnet(
        "train " + config + " --set output.dir=" + out +
        " --set data.dataset=synthetic --set data.synthetic_train_size=128 --set data.synthetic_test_size=" +
        std::to_string(kImages) +
        " --set data.synthetic_image_size=32 --set train.batch_size=32 --set train.max_steps=3 --set "
        "train.init_images=128 --set output.plot=none");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out + "/last.safetensors";
  }

  // Exports `checkpoint` (with `flags`), computes the model's logits on the test split here, and
  // runs the consumer script on both; returns its report.
  std::string export_and_compare(const std::string& checkpoint, const std::string& flags, const std::string& name) {
    const std::string model = dir_.file(name + ".onnx");
    const RunResult e = run_convnet("export " + checkpoint + " --format onnx -o " + model + " " + flags);
    EXPECT_EQ(e.exit_code, 0) << e.err;
    EXPECT_NE(e.out.find("opset 17"), std::string::npos) << e.out;

    const CheckpointSummary summary = read_checkpoint_summary(checkpoint);
    Config config = parse_config(summary.state.config_yaml, checkpoint);
    config.train.backend = "cpu";
    Backends backends(config.train);
    Graph graph;
    build_graph(config, example_shape(config.data), backends, graph);
    load_checkpoint(checkpoint, graph, nullptr);
    const ImageDataset test = cli::load_test_split(config.data, config.train.seed, 1);
    const Tensor x = normalized_images(test, kImages, config.data.mean, config.data.std);  // NHWC
    const Tensor logits = graph.forward(x, Mode::eval).clone();
    const int64_t h = x.shape()[1], w = x.shape()[2], c = x.shape()[3];
    Tensor nchw({kImages, c, h, w});
    for (int64_t n = 0; n < kImages; ++n)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx)
          for (int64_t ch = 0; ch < c; ++ch)
            nchw.f32()[((n * c + ch) * h + y) * w + xx] = x.f32()[((n * h + y) * w + xx) * c + ch];
    const std::string inputs = write_floats(dir_.file(name + ".x"), nchw.f32(), nchw.numel());
    const std::string expected = write_floats(dir_.file(name + ".logits"), logits.f32(), logits.numel());
    const RunResult r = testing::run_program(
        onnx_python(), std::string(CONVNET_SOURCE_DIR) + "/tests/tools/onnx_consumer.py " + model + " " + inputs + " " +
                           expected + " " + std::to_string(kImages) + " " + std::to_string(c) + " " +
                           std::to_string(h) + " " + std::to_string(w) + " " + std::to_string(logits.shape()[1]));
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.out << r.err;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("relative_l2 [0-9.e+-]+"))) << r.out << r.err;
    return r.out;
  }

  TempDir dir_;
};

TEST_F(CliExportOnnx, DefaultModelRunsInOnnxRuntimeWithTheSameLogits) {
  const std::string ckpt = train(std::string(CONVNET_SOURCE_DIR) + "/configs/default.yaml", "default");
  const std::string plain = export_and_compare(ckpt, "", "default");
  EXPECT_NE(plain.find("BatchNormalization"), std::string::npos) << plain;
  const std::string folded = export_and_compare(ckpt, "--fold-batch-norm", "default_folded");
  EXPECT_EQ(folded.find("BatchNormalization"), std::string::npos) << "every batchnorm follows a conv: " << folded;
  std::cout << "default: " << plain << "default, folded: " << folded;
}

TEST_F(CliExportOnnx, Fast94RunsInOnnxRuntimeWithTheSameLogits) {
  const std::string ckpt = train(std::string(CONVNET_SOURCE_DIR) + "/configs/fast94.yaml", "fast94");
  std::cout << "fast94: " << export_and_compare(ckpt, "", "fast94");
}

// Residual additions and the option-A shortcut (pad_channels: a strided Slice and a channel Pad).
TEST_F(CliExportOnnx, Resnet20RunsInOnnxRuntimeWithTheSameLogits) {
  const std::string ckpt = train(std::string(CONVNET_SOURCE_DIR) + "/configs/resnet20.yaml", "resnet20");
  const std::string report = export_and_compare(ckpt, "--fold-batch-norm", "resnet20");
  for (const char* op : {"Sum", "Slice", "Pad"}) EXPECT_NE(report.find(op), std::string::npos) << op << ": " << report;
  std::cout << "resnet20, folded: " << report;
}

TEST_F(CliExportOnnx, UnknownFormatIsAUsageError) {
  const RunResult r = run_convnet("export " + dir_.file("none.safetensors") + " --format tflite");
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace convnet
