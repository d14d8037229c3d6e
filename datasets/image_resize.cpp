#include "datasets/image_resize.h"

#include <algorithm>
#include <cmath>

#include "core/base/error.h"

namespace convnet {

std::vector<ResampleTap> resample_taps(int in, int out, int o) {
  const double scale = static_cast<double>(in) / out;
  std::vector<ResampleTap> taps;
  if (scale > 1.0) {  // area: the input interval [o * scale, (o + 1) * scale)
    const double lo = o * scale, hi = (o + 1) * scale;
    for (int i = static_cast<int>(std::floor(lo)); i < std::min(in, static_cast<int>(std::ceil(hi))); ++i) {
      const double covered = std::min(hi, i + 1.0) - std::max(lo, static_cast<double>(i));
      if (covered > 0) taps.push_back({i, covered / scale});
    }
    return taps;
  }
  // Bilinear, half-pixel centres.
  const double x = std::clamp((o + 0.5) * scale - 0.5, 0.0, static_cast<double>(in - 1));
  const int i0 = static_cast<int>(std::floor(x));
  const int i1 = std::min(i0 + 1, in - 1);
  const double f = x - i0;
  taps.push_back({i0, 1.0 - f});
  if (i1 != i0 && f > 0) taps.push_back({i1, f});
  return taps;
}

std::vector<float> resize_rgb(const DecodedImage& image, int height, int width) {
  CONVNET_CHECK(image.height > 0 && image.width > 0 && height > 0 && width > 0, "resize_rgb: empty image or size");
  CONVNET_CHECK(image.rgb.size() == static_cast<size_t>(image.height) * image.width * 3, "resize_rgb: bad buffer");
  // Rows first: [image.height, width, 3], then columns: [height, width, 3].
  std::vector<double> rows(static_cast<size_t>(image.height) * width * 3, 0.0);
  for (int x = 0; x < width; ++x)
    for (const ResampleTap& t : resample_taps(image.width, width, x))
      for (int y = 0; y < image.height; ++y)
        for (int c = 0; c < 3; ++c)
          rows[(static_cast<size_t>(y) * width + x) * 3 + c] +=
              t.weight * image.rgb[(static_cast<size_t>(y) * image.width + t.index) * 3 + c];
  std::vector<float> out(static_cast<size_t>(height) * width * 3);
  for (int y = 0; y < height; ++y) {
    const std::vector<ResampleTap> taps = resample_taps(image.height, height, y);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        double v = 0;
        for (const ResampleTap& t : taps) v += t.weight * rows[(static_cast<size_t>(t.index) * width + x) * 3 + c];
        out[(static_cast<size_t>(y) * width + x) * 3 + c] = static_cast<float>(v);
      }
  }
  return out;
}

}  // namespace convnet
