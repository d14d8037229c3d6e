// convnet::Model (what `convnet predict` runs) on the GPU backends: a checkpoint trained on the
// cpu, loaded on cuda, cuda_tf32 and cudnn, must give the cpu's probabilities for the same images
// (float32 within 1e-5 relative L2, TF32 within 1e-3), with and without test-time augmentation, and
// never a NaN. Images of other sizes than the model's go through the same resize on every backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "convnet/model.h"
#include "core/config/config.h"
#include "tests/common/app_test_util.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/image_files.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

// A small VGG with batchnorm, trained on the cpu for a few steps so its weights are not the
// initialisation's.
const char* kConfig = R"(model: {name: vgg, cfg: [16, M, 32, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 128, synthetic_test_size: 32, synthetic_image_size: 16}
optimizer: {lr: 0.05}
train: {epochs: 1, batch_size: 32, seed: 3, backend: cpu, threads: 2}
output: {plot: none}
)";

std::vector<DecodedImage> test_images() {
  std::vector<DecodedImage> images;
  const int sizes[][2] = {{16, 16}, {16, 16}, {40, 24}, {9, 7}, {64, 48}};
  uint64_t seed = 11;
  for (const auto& [h, w] : sizes) images.push_back({h, w, testing::random_pixels(h, w, 3, seed++)});
  return images;
}

double relative_l2(const std::vector<Prediction>& got, const std::vector<Prediction>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i)
    for (size_t c = 0; c < want[i].probabilities.size(); ++c) {
      const double d = got[i].probabilities[c] - want[i].probabilities[c];
      diff += d * d;
      norm += want[i].probabilities[c] * want[i].probabilities[c];
    }
  return std::sqrt(diff / norm);  // NaN when any probability is NaN: the comparison below fails
}

class GpuPredict : public ::testing::Test {
 protected:
  void SetUp() override {
    CONVNET_SKIP_WITHOUT_GPU();
    Config config = parse_config(kConfig, "gpu_predict_test", {"output.dir=" + dir_.file("run")});
    testing::train(config);
    checkpoint_ = dir_.file("run/last.safetensors");
  }

  std::vector<Prediction> predict(const std::string& backend, const std::string& tta) {
    Model model = Model::load(checkpoint_, {.backend = backend, .tta = tta, .batch_size = 3});
    return model.predict(test_images());
  }

  testing::TempDir dir_;
  std::string checkpoint_;
};

TEST_F(GpuPredict, GpuBackendsGiveTheCpusProbabilities) {
  struct Case {
    const char* backend;
    double tolerance;
  };
  for (const char* tta : {"none", "flip_translate"}) {
    const std::vector<Prediction> cpu = predict("cpu", tta);
    for (const Case& c : {Case{"cuda", 1e-5}, Case{"cudnn", 1e-5}, Case{"cuda_tf32", 1e-3}}) {
      const std::vector<Prediction> gpu = predict(c.backend, tta);
      ASSERT_EQ(gpu.size(), cpu.size());
      const double error = relative_l2(gpu, cpu);
      EXPECT_TRUE(error <= c.tolerance) << c.backend << ", tta " << tta << ": relative L2 " << error;
      for (size_t i = 0; i < cpu.size(); ++i)
        EXPECT_EQ(gpu[i].top(1)[0].index, cpu[i].top(1)[0].index) << c.backend << ", image " << i;
    }
  }
}

}  // namespace
}  // namespace convnet
