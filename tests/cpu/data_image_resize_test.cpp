// resize_rgb against a float64 reference that integrates the input over each output pixel's 2D
// footprint directly (area) or interpolates in 2D (bilinear), on random images of odd sizes; and
// the exact cases: the identity, a 2x shrink is the 2x2 mean, a constant stays constant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/base/rng.h"
#include "datasets/image_resize.h"

namespace convnet {
namespace {

DecodedImage random_image(int h, int w, uint64_t seed) {
  Rng rng(seed);
  DecodedImage im;
  im.height = h;
  im.width = w;
  im.rgb.resize(static_cast<size_t>(h) * w * 3);
  for (uint8_t& v : im.rgb) v = static_cast<uint8_t>(rng.below(256));
  return im;
}

double pixel(const DecodedImage& im, int y, int x, int c) {
  return im.rgb[(static_cast<size_t>(y) * im.width + x) * 3 + c];
}

// One axis of the reference, written from the definitions rather than from resample_taps: the
// weight of input pixel i in output pixel o.
double weight_1d(int in, int out, int o, int i) {
  const double scale = static_cast<double>(in) / out;
  if (scale > 1.0) {
    const double lo = o * scale, hi = (o + 1) * scale;
    return std::max(0.0, std::min(hi, i + 1.0) - std::max(lo, static_cast<double>(i))) / scale;
  }
  const double x = std::clamp((o + 0.5) * scale - 0.5, 0.0, in - 1.0);
  return std::max(0.0, 1.0 - std::abs(x - i));
}

std::vector<double> reference(const DecodedImage& im, int h, int w) {
  std::vector<double> out(static_cast<size_t>(h) * w * 3, 0.0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int sy = 0; sy < im.height; ++sy)
        for (int sx = 0; sx < im.width; ++sx) {
          const double wgt = weight_1d(im.height, h, y, sy) * weight_1d(im.width, w, x, sx);
          if (wgt == 0) continue;
          for (int c = 0; c < 3; ++c) out[(static_cast<size_t>(y) * w + x) * 3 + c] += wgt * pixel(im, sy, sx, c);
        }
  return out;
}

TEST(ImageResize, MatchesTheFloat64ReferenceShrinkingGrowingAndMixed) {
  struct Case {
    int h, w, out_h, out_w;
  };
  for (const Case& k : {Case{37, 23, 32, 32}, Case{17, 9, 32, 32}, Case{64, 20, 32, 32}, Case{5, 101, 7, 13}}) {
    const DecodedImage im = random_image(k.h, k.w, static_cast<uint64_t>(k.h * 1000 + k.w));
    const std::vector<float> got = resize_rgb(im, k.out_h, k.out_w);
    const std::vector<double> want = reference(im, k.out_h, k.out_w);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-3) << k.h << "x" << k.w << " -> " << k.out_h << "x" << k.out_w << " at " << i;
  }
}

TEST(ImageResize, SameSizeIsTheIdentityAndHalvingIsTheTwoByTwoMean) {
  const DecodedImage im = random_image(8, 6, 3);
  const std::vector<float> same = resize_rgb(im, 8, 6);
  for (size_t i = 0; i < same.size(); ++i) ASSERT_EQ(same[i], im.rgb[i]) << i;
  const std::vector<float> half = resize_rgb(im, 4, 3);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) {
        const double mean = (pixel(im, 2 * y, 2 * x, c) + pixel(im, 2 * y, 2 * x + 1, c) +
                             pixel(im, 2 * y + 1, 2 * x, c) + pixel(im, 2 * y + 1, 2 * x + 1, c)) /
                            4;
        ASSERT_NEAR(half[(static_cast<size_t>(y) * 3 + x) * 3 + c], mean, 1e-4);
      }
}

TEST(ImageResize, EveryOutputPixelsTapsSumToOne) {
  for (int in : {1, 2, 7, 32, 100})
    for (int out : {1, 3, 32, 77})
      for (int o = 0; o < out; ++o) {
        double sum = 0;
        for (const ResampleTap& t : resample_taps(in, out, o)) {
          ASSERT_GE(t.index, 0);
          ASSERT_LT(t.index, in);
          sum += t.weight;
        }
        ASSERT_NEAR(sum, 1.0, 1e-12) << in << " -> " << out << " at " << o;
      }
}

}  // namespace
}  // namespace convnet
