// Turning one uint8 HWC image into the network's f32 input: optional random crop (zero or reflect
// padding), horizontal flip (random or alternating) and cutout, then per-channel normalisation
// (x/255 - mean) / std. The pixel mapping and the random choices are in core/base/augment_math.h
// (augment_params_for, augmented_pixel); this is their CPU driver, and it gives exactly the pixels
// Backend::augment_batch gives for the same AugmentBatchSpec (batch_spec()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/augment_math.h"
#include "core/base/backend.h"
#include "core/base/tensor.h"
#include "core/config/config.h"
#include "datasets/image_dataset.h"

namespace convnet {

// "zero" or "reflect"; throws ConfigError naming data.augment.padding_mode otherwise.
PadMode parse_pad_mode(const std::string& name);
// FlipMode::none when `flip` (data.augment.flip) is off, else "random" or "alternating"
// (data.augment.flip_mode); throws ConfigError naming data.augment.flip_mode otherwise.
FlipMode parse_flip_mode(bool flip, const std::string& mode);

class ImageTransform {
 public:
  // `augment` false gives normalisation only (test data); `seed` (train.seed) seeds the random
  // choices. Throws ConfigError naming the key when mean/std do not have one value per channel, a
  // std is not positive, crop_padding or cutout is negative, reflect padding is not smaller than
  // the image side, or the padding or flip mode is unknown.
  ImageTransform(int height, int width, int channels, const std::vector<float>& mean, const std::vector<float>& std,
                 const AugmentConfig& config, bool augment, uint64_t seed = 0);

  // The random choices for dataset example `example` in `epoch`: augment_params_for(spec(), ...),
  // the identity when augmentation is off.
  AugmentParams params(int64_t epoch, int64_t example) const;
  // Writes the transformed image, height*width*channels floats in HWC order, to `out`: pixel
  // (y, x, c) is augmented_pixel(src, y, x, c, ..., params, ...) (a lookup table per channel
  // gives the same normalised values faster).
  void apply(const uint8_t* src, const AugmentParams& params, float* out) const;
  // The normalised value of channel c at raw value v: (v/255 - mean[c]) / std[c].
  float normalized(int c, uint8_t v) const { return table_[static_cast<size_t>(c) * 256 + v]; }

  bool augmenting() const { return augment_; }
  // The random choices as plain values (everything off when not augmenting).
  const AugmentSpec& spec() const { return spec_; }
  // Everything Backend::augment_batch needs for `epoch`: spec(), the epoch, mean and std. Throws
  // convnet::Error when the images have more than kMaxImageChannels channels.
  AugmentBatchSpec batch_spec(int64_t epoch) const;

 private:
  int height_, width_, channels_;
  bool augment_;
  AugmentSpec spec_;
  std::vector<float> mean_, std_;
  std::vector<float> table_;  // [channels][256]
};

// The first `count` images of `data`, unaugmented and normalised as above: f32 [count, H, W, C]
// on the host (data-dependent initialisation). Throws ConfigError naming train.init_images when
// count is negative or larger than the data set, and as ImageTransform for bad mean/std.
Tensor normalized_images(const ImageDataset& data, int64_t count, const std::vector<float>& mean,
                         const std::vector<float>& std);

}  // namespace convnet
