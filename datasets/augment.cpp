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

ImageTransform::ImageTransform(int height, int width, int channels, const std::vector<float>& mean,
                               const std::vector<float>& std, const AugmentConfig& config, bool augment)
    : height_(height),
      width_(width),
      channels_(channels),
      augment_(augment),
      pad_(augment ? config.crop_padding : 0),
      cutout_(augment ? config.cutout : 0),
      flip_(augment && config.flip),
      mode_(parse_pad_mode(config.padding_mode)) {
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
  if (mode_ == PadMode::reflect && pad_ >= std::min(height, width))
    throw ConfigError(fmt::format("data.augment.crop_padding: reflect padding of {} needs images larger than {}x{}",
                                  pad_, width, height));
  table_.resize(static_cast<size_t>(channels) * 256);
  for (int c = 0; c < channels; ++c) {
    const float m = mean[static_cast<size_t>(c)], s = std[static_cast<size_t>(c)];
    for (int v = 0; v < 256; ++v)
      table_[static_cast<size_t>(c) * 256 + static_cast<size_t>(v)] = normalize_pixel(static_cast<uint8_t>(v), m, s);
  }
}

AugmentParams ImageTransform::params(uint64_t image_seed) const {
  if (!augment_) return {};
  return draw_augment_params(image_seed, pad_, flip_, cutout_, height_, width_);
}

void ImageTransform::apply(const uint8_t* src, const AugmentParams& p, float* out) const {
  const int C = channels_;
  const float* table = table_.data();
  for (int y = 0; y < height_; ++y) {
    const int sy = crop_source(y, p.shift_y, height_, mode_);
    float* row = out + static_cast<int64_t>(y) * width_ * C;
    for (int x = 0; x < width_; ++x) {
      const int sx = crop_source(flip_source(x, width_, p.flip), p.shift_x, width_, mode_);
      float* px = row + static_cast<int64_t>(x) * C;
      if (sy < 0 || sx < 0) {
        for (int c = 0; c < C; ++c) px[c] = table[c * 256];  // a black padding pixel
      } else {
        const uint8_t* s = src + (static_cast<int64_t>(sy) * width_ + sx) * C;
        for (int c = 0; c < C; ++c) px[c] = table[c * 256 + s[c]];
      }
    }
  }
  if (cutout_ > 0) {
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x)
        if (in_cutout(y, x, p.cutout_y, p.cutout_x, cutout_))
          std::memset(out + (static_cast<int64_t>(y) * width_ + x) * C, 0, sizeof(float) * static_cast<size_t>(C));
  }
}

}  // namespace convnet
