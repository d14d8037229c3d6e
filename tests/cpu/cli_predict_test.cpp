// convnet predict: the probabilities it prints for an image at the model's size are the model's own
// softmax on that image (computed here from the raw pixels); images of other sizes, grey, RGBA and
// 16-bit PNGs and JPEGs get answers; a corrupt file and a missing one get an error line each while
// the rest are answered, and the exit status is 1; folders and `-` (paths on stdin) expand.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "tests/common/cli_runner.h"
#include "tests/common/image_files.h"
#include "tests/common/test_util.h"
#include "tools/session.h"

namespace convnet {
namespace {

using testing::random_pixels;
using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;

constexpr int kSize = 16;

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

class CliPredict : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const RunResult r = testing::train_tiny_checkpoint(dir_->file("run"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string checkpoint() { return dir_->file("run/last.safetensors"); }
  static std::string file(const std::string& name) { return dir_->file(name); }

  static TempDir* dir_;
};
TempDir* CliPredict::dir_ = nullptr;

TEST_F(CliPredict, ProbabilitiesAreTheModelsSoftmaxOnTheImage) {
  const std::vector<uint8_t> pixels = random_pixels(kSize, kSize, 3, 1);
  testing::write_png(file("exact.png"), kSize, kSize, pixels);
  const RunResult r = run_convnet("predict " + checkpoint() + " " + file("exact.png") + " --json --top 10");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;

  // The model's softmax here, from the raw pixels and the checkpoint's normalisation.
  const CheckpointSummary summary = read_checkpoint_summary(checkpoint());
  Config config = parse_config(summary.state.config_yaml, checkpoint());
  Backends backends(config.train);
  Graph graph;
  build_graph(config, {kSize, kSize, 3}, backends, graph);
  load_checkpoint(checkpoint(), graph, nullptr);
  Tensor x({1, kSize, kSize, 3});
  for (size_t i = 0; i < pixels.size(); ++i)
    x.f32()[i] = (pixels[i] / 255.0f - config.data.mean[i % 3]) / config.data.std[i % 3];
  const Tensor& logits = graph.forward(x, Mode::eval);
  std::vector<double> p(10);
  double total = 0;
  for (size_t c = 0; c < 10; ++c) total += p[c] = std::exp(static_cast<double>(logits.f32()[c]));
  const nlohmann::json& top = lines[0].at("top");
  ASSERT_EQ(top.size(), 10u);
  double previous = 1.0;
  for (const nlohmann::json& t : top) {
    const size_t c = t.at("index").get<size_t>();
    EXPECT_NEAR(t.at("probability").get<double>(), p[c] / total, 1e-5) << "class " << c;
    EXPECT_LE(t.at("probability").get<double>(), previous) << "sorted, most probable first";
    previous = t.at("probability").get<double>();
    EXPECT_FALSE(t.at("class").get<std::string>().empty());
  }
}

TEST_F(CliPredict, EveryKindOfImageIsAnsweredAndBadFilesGetTheirOwnError) {
  testing::write_png(file("kinds/a_rgb.png"), kSize, kSize, random_pixels(kSize, kSize, 3, 2));
  testing::write_png(file("kinds/b_grey.png"), 40, 24, random_pixels(40, 24, 1, 3), /*gray=*/true);
  testing::write_png_format(file("kinds/c_rgba.png"), 9, 9, random_pixels(9, 9, 4, 4).data(), PNG_FORMAT_RGBA);
  const std::vector<uint8_t> wide = random_pixels(20, 20, 6, 5);  // 16-bit RGB: 6 bytes a pixel
  testing::write_png_format(file("kinds/d_16bit.png"), 20, 20, wide.data(), PNG_FORMAT_LINEAR_RGB);
  testing::write_jpeg(file("kinds/e_photo.jpg"), 64, 48, random_pixels(64, 48, 3, 6));
  testing::write_file(file("kinds/f_corrupt.png"), "not an image at all");
  const RunResult r =
      run_convnet("predict " + checkpoint() + " " + file("kinds") + " " + file("missing.jpg") + " --json --top 3");
  EXPECT_EQ(r.exit_code, 1) << "a file failed: " << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 7u) << r.out;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_FALSE(lines[i].contains("error")) << lines[i].dump();
    EXPECT_EQ(lines[i].at("top").size(), 3u) << lines[i].dump();
  }
  EXPECT_NE(lines[5].at("path").get<std::string>().find("f_corrupt.png"), std::string::npos);
  EXPECT_FALSE(lines[5].at("error").get<std::string>().empty());
  EXPECT_NE(lines[6].at("error").get<std::string>().find("No such file or directory"), std::string::npos) << lines[6];
}

TEST_F(CliPredict, PathsFromStdinAndTextOutput) {
  testing::write_png(file("stdin/one.png"), kSize, kSize, random_pixels(kSize, kSize, 3, 7));
  testing::write_png(file("stdin/two.png"), kSize, kSize, random_pixels(kSize, kSize, 3, 8));
  testing::write_file(file("list.txt"), file("stdin/one.png") + "\n" + file("stdin/two.png") + "\n");
  const RunResult r = testing::run_program("sh", "-c '" + std::string(CONVNET_BINARY) + " predict " + checkpoint() +
                                                     " - --top 2 < " + file("list.txt") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(lines[0].starts_with(file("stdin/one.png") + ": ")) << lines[0];
  EXPECT_TRUE(lines[1].starts_with(file("stdin/two.png") + ": ")) << lines[1];
}

TEST_F(CliPredict, NoImagesIsAUsageError) {
  std::filesystem::create_directories(file("empty"));
  const RunResult r = run_convnet("predict " + checkpoint() + " " + file("empty"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no images given"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace convnet
