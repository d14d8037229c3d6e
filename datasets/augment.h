// Turning one uint8 HWC image into the network's f32 input: optional random crop (zero or reflect
// padding), horizontal flip and cutout, then per-channel normalisation (x/255 - mean) / std.
// The pixel mapping is in augment_math.h; this is its CPU driver.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/base/augment_math.h"

namespace convnet {

// "zero" or "reflect"; throws ConfigError naming data.augment.padding_mode otherwise.
PadMode parse_pad_mode(const std::string& name);

class ImageTransform {
 public:
  // `augment` false gives normalisation only (test data). Throws ConfigError naming the key when
  // mean/std do not have one value per channel, a std is not positive, crop_padding or cutout is
  // negative, or reflect padding is not smaller than the image side.
  ImageTransform(int height, int width, int channels, const std::vector<float>& mean, const std::vector<float>& std,
                 const AugmentConfig& config, bool augment);

  // The random choices for an image seed (the identity when augmentation is off).
  AugmentParams params(uint64_t image_seed) const;
  // Writes the transformed image, height*width*channels floats in HWC order, to `out`.
  void apply(const uint8_t* src, const AugmentParams& params, float* out) const;
  // The normalised value of channel c at raw value v: (v/255 - mean[c]) / std[c].
  float normalized(int c, uint8_t v) const { return table_[static_cast<size_t>(c) * 256 + v]; }

  bool augmenting() const { return augment_; }

 private:
  int height_, width_, channels_;
  bool augment_;
  int pad_, cutout_;
  bool flip_;
  PadMode mode_;
  std::vector<float> table_;  // [channels][256]
};

}  // namespace convnet
