// The C++ library (convnet/convnet.h): installed with `cmake --install` into a fresh prefix, the
// standalone examples/predict_image builds against it with find_package(convnet) and prints for
// each image what `convnet predict --top 3` prints; in process, convnet::Model answers the CLI's
// JSON probabilities, batches as it answers one image at a time, and reports bad checkpoints,
// options and images as convnet::Error naming them.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convnet/convnet.h"
#include "tests/common/cli_runner.h"
#include "tests/common/image_files.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::random_pixels;
using testing::run_convnet;
using testing::run_program;
using testing::RunResult;
using testing::TempDir;

constexpr int kSize = 16;

class CliLibrary : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const RunResult r = testing::train_tiny_checkpoint(dir_->file("run"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // One image at the model's size, one to shrink (grey), one to grow, one JPEG.
    testing::write_png(file("images/a.png"), kSize, kSize, random_pixels(kSize, kSize, 3, 1));
    testing::write_png(file("images/b_grey.png"), 40, 24, random_pixels(40, 24, 1, 2), /*gray=*/true);
    testing::write_png(file("images/c_small.png"), 9, 7, random_pixels(9, 7, 3, 3));
    testing::write_jpeg(file("images/d_photo.jpg"), 64, 48, random_pixels(64, 48, 3, 4));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string checkpoint() { return dir_->file("run/last.safetensors"); }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::vector<std::string> images() {
    return {file("images/a.png"), file("images/b_grey.png"), file("images/c_small.png"), file("images/d_photo.jpg")};
  }

  static TempDir* dir_;
};
TempDir* CliLibrary::dir_ = nullptr;

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const std::string& w : words) s += " " + w;
  return s;
}

TEST_F(CliLibrary, ExampleBuiltAgainstTheInstallPrintsWhatConvnetPredictPrints) {
#ifdef CONVNET_INSTRUMENTED_BUILD
  GTEST_SKIP() << "a sanitizer/fuzzer build installs instrumented libraries, which a plain example program "
                  "cannot link (it lacks the sanitizer runtime)";
#endif
  const std::string cmake = CONVNET_CMAKE;
  const std::string prefix = file("prefix"), build = file("example-build");
  RunResult r = run_program(cmake, "--install " + std::string(CONVNET_BUILD_DIR) + " --prefix " + prefix);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(std::filesystem::exists(prefix + "/include/convnet/convnet/convnet.h"));
  EXPECT_TRUE(std::filesystem::exists(prefix + "/lib/cmake/convnet/convnetConfigVersion.cmake"));

  // Out of tree, as another project would: only the prefix tells it where convnet is.
  std::string configure = "-S " + std::string(CONVNET_SOURCE_DIR) + "/examples/predict_image -B " + build +
                          " -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" + prefix +
                          " -DCMAKE_CXX_COMPILER=" + CONVNET_CXX_COMPILER;
  if (!std::string(CONVNET_CCACHE).empty()) configure += " -DCMAKE_CXX_COMPILER_LAUNCHER=" CONVNET_CCACHE;
  r = run_program(cmake, configure);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("CUDA backends: " CONVNET_WITH_CUDA_TEXT), std::string::npos)
      << "convnet_WITH_CUDA records the build:\n"
      << r.out;
  r = run_program(cmake, "--build " + build);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const RunResult example = run_program(build + "/predict_image", checkpoint() + joined(images()));
  ASSERT_EQ(example.exit_code, 0) << example.err;
  const RunResult cli = run_convnet("predict " + checkpoint() + joined(images()) + " --top 3 --backend cpu");
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(example.out, cli.out) << "the library and the CLI answer alike";
  EXPECT_EQ(std::count(example.out.begin(), example.out.end(), '\n'), 4) << example.out;

  const RunResult missing = run_program(build + "/predict_image", checkpoint() + " " + file("missing.png"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("missing.png"), std::string::npos) << missing.err;
}

// A model trained on an image tree of 12x12 images reads 12x12 images (the size its checkpoint
// records), not the 32x32 a cifar10 data config stands for: a global-pool model would otherwise
// answer 32x32 resizes without a word.
TEST_F(CliLibrary, ModelReadsTheImageSizeItWasTrainedOn) {
  for (const char* split : {"train", "test"})
    for (const char* name : {"cat", "dog"})
      for (int i = 0; i < 4; ++i)
        testing::write_png(file(std::string("tree12/") + split + "/" + name + "/" + std::to_string(i) + ".png"), 12, 12,
                           random_pixels(12, 12, 3, static_cast<uint64_t>(i + 10 * name[0])));
  testing::write_file(file("tree12.yaml"),
                      "model: {name: vgg, cfg: [8, M], pool: avg, num_classes: 2}\n"
                      "train: {epochs: 1, batch_size: 4, threads: 2}\n"
                      "output: {plot: none}\n");
  const RunResult t = run_convnet("train " + file("tree12.yaml") + " --set data.path=" + file("tree12") +
                                  " --set output.dir=" + file("run12"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const Model model = Model::load(file("run12/last.safetensors"), {.backend = "cpu"});
  EXPECT_EQ(model.input_shape().height, 12);
  EXPECT_EQ(model.input_shape().width, 12);
  EXPECT_EQ(model.input_shape().channels, 3);
}

TEST_F(CliLibrary, ModelAnswersTheProbabilitiesOfConvnetPredict) {
  const RunResult cli = run_convnet("predict " + checkpoint() + " " + file("images/b_grey.png") + " --json --top 10");
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const nlohmann::json top = nlohmann::json::parse(cli.out).at("top");

  Model model = Model::load(checkpoint(), {.backend = "cpu"});
  EXPECT_EQ(model.input_shape().height, kSize);
  EXPECT_EQ(model.input_shape().width, kSize);
  EXPECT_EQ(model.input_shape().channels, 3);
  ASSERT_EQ(model.class_names().size(), 10u);
  const Prediction p = model.predict(decode_image_file(file("images/b_grey.png")));
  ASSERT_EQ(p.probabilities.size(), 10u);
  double total = 0;
  for (double v : p.probabilities) total += v;
  EXPECT_NEAR(total, 1.0, 1e-12);
  const std::vector<ClassScore> ranked = p.top(10);
  ASSERT_EQ(ranked.size(), top.size());
  for (size_t i = 0; i < ranked.size(); ++i) {
    EXPECT_EQ(ranked[i].index, top[i].at("index").get<int>());
    EXPECT_EQ(model.class_names()[static_cast<size_t>(ranked[i].index)], top[i].at("class").get<std::string>());
    EXPECT_DOUBLE_EQ(ranked[i].probability, top[i].at("probability").get<double>());
  }
  EXPECT_EQ(p.top(100).size(), 10u) << "k beyond the class count: every class";
  EXPECT_THROW(p.top(0), ConfigError);
}

TEST_F(CliLibrary, BatchesAnswerAsSingleImages) {
  std::vector<DecodedImage> decoded;
  for (const std::string& path : images()) decoded.push_back(decode_image_file(path));
  LoadOptions options;
  options.backend = "cpu";
  options.batch_size = 3;  // 4 images: a full batch and a partial one
  Model model = Model::load(checkpoint(), options);
  const std::vector<Prediction> together = model.predict(decoded);
  ASSERT_EQ(together.size(), decoded.size());
  for (size_t i = 0; i < decoded.size(); ++i) {
    const Prediction alone = model.predict(decoded[i]);
    for (size_t c = 0; c < alone.probabilities.size(); ++c)
      EXPECT_NEAR(together[i].probabilities[c], alone.probabilities[c], 1e-6) << "image " << i << " class " << c;
  }
  EXPECT_TRUE(model.predict(std::vector<DecodedImage>{}).empty());
}

// The message of the Error `f` throws.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(CliLibrary, BadCheckpointsOptionsAndImagesAreErrorsNamingThem) {
  EXPECT_NE(error_of([] { Model::load(file("nowhere.safetensors")); }).find("nowhere.safetensors"), std::string::npos);
  testing::write_file(file("not_a_checkpoint.safetensors"), "this is not a safetensors file");
  EXPECT_NE(error_of([] { Model::load(file("not_a_checkpoint.safetensors")); }).find("not_a_checkpoint"),
            std::string::npos);
  EXPECT_THROW(Model::load(checkpoint(), {.backend = "abacus"}), ConfigError);
  EXPECT_THROW(Model::load(checkpoint(), {.backend = "cpu", .tta = "sideways"}), ConfigError);
  EXPECT_THROW(Model::load(checkpoint(), {.backend = "cpu", .batch_size = 0}), ConfigError);

  Model model = Model::load(checkpoint(), {.backend = "cpu"});
  DecodedImage short_rows;
  short_rows.height = 4;
  short_rows.width = 5;
  short_rows.rgb.assign(4 * 5 * 3 - 1, 0);
  const std::string message = error_of([&] { model.predict(std::vector<DecodedImage>{DecodedImage{}, short_rows}); });
  EXPECT_NE(message.find("image 0"), std::string::npos) << "the empty one first: " << message;
  EXPECT_NE(error_of([&] { model.predict(short_rows); }).find("need 60 bytes, but rgb holds 59"), std::string::npos);
}

}  // namespace
}  // namespace convnet
