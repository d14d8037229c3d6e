// convnet::Model: a trained checkpoint as an image classifier, the library face of `convnet
// predict`. Not thread-safe: one Model runs one predict() at a time (it keeps its buffers).
//
//   convnet::Model model = convnet::Model::load("runs/default/best.safetensors", {.backend = "cpu"});
//   const convnet::Prediction p = model.predict(convnet::decode_image_file("cat.png"));
//   for (const convnet::ClassScore& s : p.top(3)) std::cout << model.class_names()[s.index] << "\n";
//
// Every failure is a convnet::Error (core/base/error.h) whose message names the file or the input
// that caused it; a ConfigError (a subclass) when the cause is a setting the caller chose. Warnings
// go through spdlog, to stderr, unless the program has set a default spdlog logger of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "datasets/image_codec.h"

namespace convnet {

struct LoadOptions {
  // Where the model runs: "cpu", "auto" (the first GPU backend this build can run, else cpu), or a
  // GPU backend of a CUDA build ("cuda", "cudnn", ...). Empty: the checkpoint's own train.backend.
  std::string backend;
  // Test-time augmentation: "none", "flip" or "flip_translate" (logits averaged over the views).
  std::string tta = "none";
  // Images per forward pass; predict() splits larger requests. Must be positive.
  int batch_size = 64;
};

// The size of image the model reads; predict() resizes every image to it.
struct InputShape {
  int height = 0, width = 0, channels = 0;
};

struct ClassScore {
  int index = 0;             // into Model::class_names()
  double probability = 0.0;  // softmax of the model's logits
};

// One image's answer.
struct Prediction {
  std::vector<double> probabilities;  // one per class, in class_names() order; they sum to 1

  // The `k` most probable classes, most probable first (ties: the lower index first); all of them
  // when k exceeds the class count. k must be positive.
  std::vector<ClassScore> top(int k) const;
};

class Model {
 public:
  // Reads a checkpoint written by `convnet train` (its model is rebuilt from the config saved in
  // it, then its weights loaded and checked). Throws Error when the file is missing, unreadable, not
  // a convnet checkpoint, or damaged; ConfigError for an unknown backend or tta, a batch_size below
  // 1, or a model whose input is not an RGB image.
  static Model load(const std::string& checkpoint, const LoadOptions& options = {});

  // Movable, not copyable; a moved-from Model may only be assigned to or destroyed.
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  // One name per model output: the class names the checkpoint records, else "class0", "class1", ...
  const std::vector<std::string>& class_names() const;
  InputShape input_shape() const;

  // Classifies 8-bit RGB images of any size (decode_image_file reads JPEG and PNG files to one).
  // Each is resized to input_shape() (area when shrinking, bilinear when growing; see
  // datasets/image_resize.h) and normalised with the checkpoint's data.mean and data.std, exactly as
  // `convnet predict` does, so the answers are the same. Throws Error, naming the image by its
  // position, when one is empty or its rgb does not hold height * width * 3 bytes.
  std::vector<Prediction> predict(const std::vector<DecodedImage>& images);
  Prediction predict(const DecodedImage& image);

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace convnet
