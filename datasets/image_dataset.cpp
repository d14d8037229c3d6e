#include "datasets/image_dataset.h"

#include <fmt/format.h>

#include <cstring>

#include "core/base/error.h"

namespace convnet {

const char* split_name(Split split) {
  return split == Split::train ? "train" : "test";
}

std::string ImageDataset::fingerprint() const {
  uint64_t hash = fnv1a64(pixels.data(), pixels.size());
  // Labels as explicit little-endian bytes so the hash does not depend on the host byte order.
  for (int32_t label : labels) {
    const auto v = static_cast<uint32_t>(label);
    const uint8_t bytes[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                              static_cast<uint8_t>(v >> 24)};
    hash = fnv1a64(bytes, 4, hash);
  }
  return fmt::format("N={} H={} W={} C={} classes={} fnv1a64={:016x}", size, height, width, channels,
                     class_names.size(), hash);
}

ImageDataset ImageDataset::subset(const std::vector<int64_t>& indices) const {
  ImageDataset out;
  out.size = static_cast<int64_t>(indices.size());
  out.height = height;
  out.width = width;
  out.channels = channels;
  out.class_names = class_names;
  out.source = fmt::format("{} ({} of {} images)", source, indices.size(), size);
  const int64_t bytes = image_bytes();
  out.pixels.resize(static_cast<size_t>(out.size * bytes));
  out.labels.resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t j = indices[i];
    CONVNET_CHECK(j >= 0 && j < size, "subset index {} outside [0, {})", j, size);
    std::memcpy(out.pixels.data() + static_cast<int64_t>(i) * bytes, image(j), static_cast<size_t>(bytes));
    out.labels[i] = labels[static_cast<size_t>(j)];
  }
  return out;
}

void ImageDataset::validate() const {
  if (size < 0 || height <= 0 || width <= 0 || channels <= 0)
    throw Error(fmt::format("{}: bad image set shape: {} images of {}x{}x{}", source, size, height, width, channels));
  if (static_cast<int64_t>(pixels.size()) != size * image_bytes())
    throw Error(fmt::format("{}: {} pixel bytes for {} images of {}x{}x{} (expected {})", source, pixels.size(), size,
                            height, width, channels, size * image_bytes()));
  if (static_cast<int64_t>(labels.size()) != size)
    throw Error(fmt::format("{}: {} labels for {} images", source, labels.size(), size));
  if (class_names.empty()) throw Error(fmt::format("{}: no class names", source));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes())
      throw Error(fmt::format("{}: image {}: label {} outside 0-{}", source, i, labels[i], num_classes() - 1));
  }
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

}  // namespace convnet
