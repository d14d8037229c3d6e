#include "datasets/synthetic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/base/error.h"
#include "core/base/rng.h"

namespace convnet {

ImageDataset make_synthetic(int64_t size, int image_size, int num_classes, uint64_t seed, int channels, float noise) {
  if (size <= 0 || image_size <= 0 || num_classes <= 0 || channels <= 0)
    throw ConfigError(
        fmt::format("synthetic data: size {}, image size {}, {} classes and {} channels must all be positive", size,
                    image_size, num_classes, channels));
  ImageDataset data;
  data.size = size;
  data.height = data.width = image_size;
  data.channels = channels;
  for (int c = 0; c < num_classes; ++c) data.class_names.push_back(fmt::format("class{}", c));
  data.source =
      fmt::format("synthetic(size={}, image_size={}, classes={}, seed={})", size, image_size, num_classes, seed);

  // Balanced labels, shuffled so that neighbouring images are not of the same class.
  data.labels.resize(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) data.labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % num_classes);
  Rng order(hash64(seed, 0x5157ull));
  for (int64_t i = size - 1; i > 0; --i)
    std::swap(data.labels[static_cast<size_t>(i)],
              data.labels[static_cast<size_t>(order.below(static_cast<uint64_t>(i + 1)))]);

  constexpr double two_pi = 2.0 * std::numbers::pi;
  data.pixels.resize(static_cast<size_t>(size * data.image_bytes()));
  for (int64_t i = 0; i < size; ++i) {
    const int label = data.labels[static_cast<size_t>(i)];
    const double angle = std::numbers::pi * label / num_classes;
    const double cos_a = std::cos(angle), sin_a = std::sin(angle);
    Rng rng(hash64(seed, static_cast<uint64_t>(i)));
    const double phase = two_pi * rng.uniform();
    const double cycles = 2.5 * (0.9 + 0.2 * rng.uniform());  // stripes across the image
    uint8_t* out = data.image(i);
    for (int y = 0; y < image_size; ++y) {
      for (int x = 0; x < image_size; ++x) {
        const double t = (x * cos_a + y * sin_a) / image_size;
        const double wave = std::sin(two_pi * cycles * t + phase);
        for (int ch = 0; ch < channels; ++ch) {
          // Colour on a hue wheel: each class tints the channels differently.
          const double tint =
              0.5 +
              0.5 * std::cos(two_pi * (static_cast<double>(label) / num_classes + static_cast<double>(ch) / channels));
          const double v = 128.0 + 60.0 * wave * (0.4 + 0.6 * tint) + 30.0 * (tint - 0.5) + noise * rng.normal();
          out[(y * image_size + x) * channels + ch] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
      }
    }
  }
  return data;
}

}  // namespace convnet
