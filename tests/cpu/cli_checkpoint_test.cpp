// The convnet executable with checkpoints that do not match what they are used with: data whose
// classes are in another order or named otherwise, images of another size, weights written by
// another program (evaluate / info / train --init-from with --config), and damaged values.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "datasets/cifar_binary.h"
#include "tests/common/cli_runner.h"
#include "tests/common/safetensors_edit.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;

const char* kModel = "model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg, num_classes: 3}\n";
const char* kTrain = "optimizer: {lr: 0.05}\ntrain: {epochs: 1, batch_size: 8, seed: 1, threads: 2, log_every: 4}\n";

// 32x32 images in CIFAR-10 binary files (data_batch_1..5.bin, test_batch.bin) with 3 classes named
// `names` in batches.meta.txt; label `order[c]` is given to the images of class c, so a permuted
// `order` and `names` describe the same images and classes.
void write_binary_data(const std::string& dir, const std::vector<std::string>& names, const std::vector<int>& order) {
  std::filesystem::create_directories(dir);
  Rng rng(7);
  auto split = [&](int64_t n, const std::string& file) {
    ImageDataset d;
    d.size = n;
    d.height = d.width = 32;
    d.channels = 3;
    d.class_names = names;
    for (int64_t i = 0; i < n; ++i) {
      const int c = static_cast<int>(i % 3);
      d.labels.push_back(order[static_cast<size_t>(c)]);
      for (int p = 0; p < 32 * 32 * 3; ++p)  // the class sets the colour: something to learn
        d.pixels.push_back(static_cast<uint8_t>((p % 3 == c ? 160 : 40) + rng.below(60)));
    }
    write_cifar10_binary(d, dir + "/" + file);
  };
  for (int b = 1; b <= 5; ++b) split(12, fmt::format("data_batch_{}.bin", b));
  split(30, "test_batch.bin");
  write_cifar10_meta(names, dir + "/batches.meta.txt");
}

class CliCheckpoint : public ::testing::Test {
 protected:
  // Trains a checkpoint on binary data with classes a, b, c; returns OUT/last.safetensors.
  std::string train_on_binary() {
    write_binary_data(dir_.file("data"), {"a", "b", "c"}, {0, 1, 2});
    write_file(config_, fmt::format("{}data: {{dataset: cifar10, path: {}, format: binary}}\n{}output: {{dir: {}}}\n",
                                    kModel, dir_.file("data"), kTrain, dir_.file("run")));
    const RunResult r = run_convnet("train " + config_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return dir_.file("run/last.safetensors");
  }
  nlohmann::json evaluate_json(const std::string& args) {
    const RunResult r = run_convnet("evaluate " + args + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
  // The checkpoint's model tensors as another program writes them: no convnet metadata or checksum.
  std::string foreign_copy(const std::string& checkpoint) {
    SafetensorsFile file = read_safetensors(checkpoint);
    std::erase_if(file.tensors, [](const NamedTensor& t) { return t.name.rfind("optimizer.", 0) == 0; });
    const std::string path = dir_.file("torch.safetensors");
    write_safetensors(path, file.tensors, {{"format", "pt"}});
    const std::string bytes = read_file(path);
    nlohmann::ordered_json header = testing::header_of(bytes);
    header["__metadata__"].erase("convnet.file_checksum");
    write_file(path, testing::with_header(bytes, header));
    return path;
  }

  TempDir dir_;
  const std::string config_ = dir_.file("binary.yaml");
};

TEST_F(CliCheckpoint, EvaluateMapsClassesInAnotherOrderByName) {
  const std::string ckpt = train_on_binary();
  const nlohmann::json same = evaluate_json(ckpt);
  // The same images, the classes listed c, a, b: a's images carry label 1, b's 2, c's 0.
  write_binary_data(dir_.file("reordered"), {"c", "a", "b"}, {1, 2, 0});
  const nlohmann::json reordered = evaluate_json(ckpt + " --data " + dir_.file("reordered"));
  EXPECT_EQ(reordered["class_names"], (nlohmann::json{"a", "b", "c"}));
  EXPECT_EQ(reordered["accuracy"], same["accuracy"]);
  EXPECT_EQ(reordered["per_class_accuracy"], same["per_class_accuracy"]);
  EXPECT_EQ(reordered["confusion_matrix"], same["confusion_matrix"]);
}

TEST_F(CliCheckpoint, EvaluateOnOtherClassesIsAnErrorListingThem) {
  const std::string ckpt = train_on_binary();
  write_binary_data(dir_.file("renamed"), {"a", "b", "zebra"}, {0, 1, 2});
  const RunResult r = run_convnet("evaluate " + ckpt + " --data " + dir_.file("renamed"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("only in the data: [zebra]; only in the model: [c]"), std::string::npos) << r.err;
}

TEST_F(CliCheckpoint, EvaluateOnImagesOfAnotherSizeIsAnError) {
  const std::string model = "model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}\n";
  write_file(config_, model +
                          "data: {dataset: synthetic, synthetic_train_size: 48, synthetic_test_size: 12, "
                          "synthetic_image_size: 8}\n" +
                          kTrain + "output: {dir: " + dir_.file("run") + "}\n");
  ASSERT_EQ(run_convnet("train " + config_).exit_code, 0);
  const std::string bigger = dir_.file("bigger.yaml");
  write_file(bigger, model + "data: {dataset: synthetic, synthetic_image_size: 16}\n");
  const RunResult r = run_convnet("evaluate " + dir_.file("run/last.safetensors") + " --config " + bigger);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("holds 16x16 images with 3 channels, but the model of"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("was trained on 8x8 images"), std::string::npos) << r.err;
}

TEST_F(CliCheckpoint, ForeignWeightsNeedAConfigAndThenEvaluateAsTheCheckpoint) {
  const std::string ckpt = train_on_binary();
  const std::string torch = foreign_copy(ckpt);
  RunResult r = run_convnet("evaluate " + torch);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a convnet checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--config CONFIG"), std::string::npos) << r.err;
  const nlohmann::json ours = evaluate_json(ckpt);
  const nlohmann::json theirs = evaluate_json(torch + " --config " + config_);
  EXPECT_EQ(theirs["accuracy"], ours["accuracy"]);
  EXPECT_EQ(theirs["confusion_matrix"], ours["confusion_matrix"]);

  r = run_convnet("info " + torch);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no convnet metadata"), std::string::npos) << r.out;
  r = run_convnet("info " + torch + " --config " + config_ + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json info = nlohmann::json::parse(r.out);
  EXPECT_FALSE(info["convnet_checkpoint"].get<bool>());
  EXPECT_EQ(info["fits_model_of"], config_);
  // Another model: the names that differ are listed.
  const std::string wider = dir_.file("wider.yaml");
  write_file(wider, "model: {name: vgg, cfg: [8, M, 16, M, 32], batch_norm: true, pool: avg, num_classes: 3}\n");
  r = run_convnet("info " + torch + " --config " + wider);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not fit the model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("features.8.weight"), std::string::npos) << r.err;
}

TEST_F(CliCheckpoint, TrainInitFromStartsFromTheWeights) {
  const std::string ckpt = train_on_binary();
  const std::string torch = foreign_copy(ckpt);
  // lr 1e-30: a step leaves the (non-zero) weights what they started from, to the last bit.
  const RunResult r =
      run_convnet("train " + config_ + " --init-from " + torch +
                  " --set optimizer.lr=1e-30 --set output.dir=" + dir_.file("init") + " --set train.max_steps=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const SafetensorsFile from = read_safetensors(torch), after = read_safetensors(dir_.file("init/last.safetensors"));
  for (const char* name : {"features.0.weight", "features.1.weight", "classifier.weight"})
    EXPECT_EQ(after.find(name)->to_vector(), from.find(name)->to_vector()) << name;
  EXPECT_EQ(run_convnet("train " + config_ + " --init-from " + torch + " --resume " + ckpt).exit_code, 2);
}

TEST_F(CliCheckpoint, InfoChecksValuesAndTheModelOfItsConfig) {
  const std::string ckpt = train_on_binary();
  RunResult r = run_convnet("info " + ckpt);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("every tensor fits the model of its config"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("classes: [\"a\",\"b\",\"c\"]"), std::string::npos) << r.out;
  SafetensorsFile file = read_safetensors(ckpt);
  for (NamedTensor& t : file.tensors)
    if (t.name == "features.1.running_var") t.tensor.f32()[0] = -1.0f;
  write_safetensors(ckpt, file.tensors, file.metadata);
  r = run_convnet("info " + ckpt);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tensor 'features.1.running_var' holds the variance -1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace convnet
