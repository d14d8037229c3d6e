#include "datasets/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/base/error.h"

namespace convnet {

PadMode parse_pad_mode(const std::string& name) {
  if (name == "zero") return PadMode::zero;
  if (name == "reflect") return PadMode::reflect;
  throw ConfigError(fmt::format("data.augment.padding_mode: expected zero or reflect, got '{}'", name));
}

FlipMode parse_flip_mode(bool flip, const std::string& mode) {
  if (mode != "random" && mode != "alternating")
    throw ConfigError(fmt::format("data.augment.flip_mode: expected random or alternating, got '{}'", mode));
  if (!flip) return FlipMode::none;
  return mode == "alternating" ? FlipMode::alternating : FlipMode::random;
}

ImageTransform::ImageTransform(int height, int width, int channels, const std::vector<float>& mean,
                               const std::vector<float>& std, const AugmentConfig& config, bool augment, uint64_t seed)
    : height_(height), width_(width), channels_(channels), augment_(augment), mean_(mean), std_(std) {
  spec_.seed = seed;
  spec_.pad_mode = parse_pad_mode(config.padding_mode);
  const FlipMode flip = parse_flip_mode(config.flip, config.flip_mode);
  if (augment) {
    spec_.pad = config.crop_padding;
    spec_.flip = flip;
    spec_.cutout = config.cutout;
  }
  CONVNET_CHECK(height > 0 && width > 0 && channels > 0, "bad image shape {}x{}x{}", height, width, channels);
  if (static_cast<int>(mean.size()) != channels || static_cast<int>(std.size()) != channels)
    throw ConfigError(fmt::format("data.mean and data.std need one value per image channel ({}), got {} and {}",
                                  channels, mean.size(), std.size()));
  for (int c = 0; c < channels; ++c) {
    if (!(std[static_cast<size_t>(c)] > 0))
      throw ConfigError(fmt::format("data.std[{}]: expected a positive value, got {}", c, std[static_cast<size_t>(c)]));
  }
  if (config.crop_padding < 0)
    throw ConfigError(fmt::format("data.augment.crop_padding: expected >= 0, got {}", config.crop_padding));
  if (config.cutout < 0) throw ConfigError(fmt::format("data.augment.cutout: expected >= 0, got {}", config.cutout));
  if (spec_.pad_mode == PadMode::reflect && spec_.pad >= std::min(height, width))
    throw ConfigError(fmt::format("data.augment.crop_padding: reflect padding of {} needs images larger than {}x{}",
                                  spec_.pad, width, height));
  table_.resize(static_cast<size_t>(channels) * 256);
  for (int c = 0; c < channels; ++c) {
    const float m = mean[static_cast<size_t>(c)], s = std[static_cast<size_t>(c)];
    for (int v = 0; v < 256; ++v)
      table_[static_cast<size_t>(c) * 256 + static_cast<size_t>(v)] = normalize_pixel(static_cast<uint8_t>(v), m, s);
  }
}

AugmentParams ImageTransform::params(int64_t epoch, int64_t example) const {
  if (!augment_) return {};
  return augment_params_for(spec_, epoch, example, height_, width_);
}

AugmentBatchSpec ImageTransform::batch_spec(int64_t epoch) const {
  CONVNET_CHECK(channels_ <= kMaxImageChannels, "images with {} channels cannot be augmented on a device (at most {})",
                channels_, kMaxImageChannels);
  AugmentBatchSpec s;
  s.augment = spec_;
  s.epoch = epoch;
  for (size_t c = 0; c < static_cast<size_t>(channels_); ++c) {
    s.mean[c] = mean_[c];
    s.std[c] = std_[c];
  }
  return s;
}

// augmented_pixel's arithmetic, loop by loop: the table holds normalize_pixel's values, and the
// cutout square is zeroed after the crop, as augmented_pixel's early return does.
void ImageTransform::apply(const uint8_t* src, const AugmentParams& p, float* out) const {
  const int C = channels_;
  const PadMode mode = spec_.pad_mode;
  const int cutout = spec_.cutout;
  const float* table = table_.data();
  for (int y = 0; y < height_; ++y) {
    const int sy = crop_source(y, p.shift_y, height_, mode);
    float* row = out + static_cast<int64_t>(y) * width_ * C;
    for (int x = 0; x < width_; ++x) {
      const int sx = crop_source(flip_source(x, width_, p.flip), p.shift_x, width_, mode);
      float* px = row + static_cast<int64_t>(x) * C;
      if (sy < 0 || sx < 0) {
        for (int c = 0; c < C; ++c) px[c] = table[c * 256];  // a black padding pixel
      } else {
        const uint8_t* s = src + (static_cast<int64_t>(sy) * width_ + sx) * C;
        for (int c = 0; c < C; ++c) px[c] = table[c * 256 + s[c]];
      }
    }
  }
  if (cutout > 0) {
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x)
        if (in_cutout(y, x, p.cutout_y, p.cutout_x, cutout))
          std::memset(out + (static_cast<int64_t>(y) * width_ + x) * C, 0, sizeof(float) * static_cast<size_t>(C));
  }
}

Tensor normalized_images(const ImageDataset& data, int64_t count, const std::vector<float>& mean,
                         const std::vector<float>& std) {
  if (count < 0 || count > data.size)
    throw ConfigError(fmt::format("train.init_images: expected 0 to {} (the training images of {}), got {}", data.size,
                                  data.source, count));
  const ImageTransform transform(data.height, data.width, data.channels, mean, std, AugmentConfig{}, false);
  Tensor out({count, data.height, data.width, data.channels});
  const int64_t image_floats = data.image_bytes();
  for (int64_t i = 0; i < count; ++i) transform.apply(data.image(i), AugmentParams{}, out.f32() + i * image_floats);
  return out;
}

}  // namespace convnet
