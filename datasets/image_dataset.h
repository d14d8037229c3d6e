// An in-memory labelled image set: N images of one size, uint8 HWC, with integer labels. Every
// data source (CIFAR-10 binary files, image folders, synthetic patterns) produces one of these and
// DataLoader turns it into normalised f32 batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/hash.h"

namespace convnet {

enum class Split { train, test };
const char* split_name(Split split);  // "train", "test"

struct ImageDataset {
  int64_t size = 0;
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // [size, height, width, channels], row-major (NHWC)
  std::vector<int32_t> labels;  // [size], each in [0, class_names.size())
  std::vector<std::string> class_names;
  std::string source;  // where it came from, for messages ("data/cifar10/test_batch.bin")

  int64_t image_bytes() const { return static_cast<int64_t>(height) * width * channels; }
  int num_classes() const { return static_cast<int>(class_names.size()); }
  // Pointer to the first byte of image `index` (0 <= index < size; not bounds-checked).
  const uint8_t* image(int64_t index) const { return pixels.data() + index * image_bytes(); }
  uint8_t* image(int64_t index) { return pixels.data() + index * image_bytes(); }

  // "N=50000 H=32 W=32 C=3 classes=10 fnv1a64=<16 hex digits>": the sizes plus an FNV-1a 64
  // hash of the pixels followed by the labels (4 little-endian bytes each). Equal data gives
  // equal strings on every platform; it costs one pass over the pixels.
  std::string fingerprint() const;

  // The images at `indices` (in that order), with the same class names; `source` gets a note.
  ImageDataset subset(const std::vector<int64_t>& indices) const;

  // Throws convnet::Error naming `source` when the sizes disagree or a label is out of range.
  void validate() const;
};

// A data set's two splits, as every loader returns them.
struct DataSplits {
  ImageDataset train, test;
};

// The 10 CIFAR-10 class names in the official label order 0-9 (also alphabetical).
const std::vector<std::string>& cifar10_class_names();

}  // namespace convnet
