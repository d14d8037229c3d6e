// Augmentation index math (crop shifts, zero and reflect padding, flip, cutout) checked by hand on
// small images, the random parameter draws, flip modes, normalisation values, and the table-driven
// ImageTransform::apply against the shared per-pixel definition augmented_pixel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/base/augment_math.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "datasets/augment.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

// Compile-time checks: the math is constexpr, as GPU kernels will need.
static_assert(reflect_index(-1, 4) == 1 && reflect_index(4, 4) == 2 && reflect_index(2, 4) == 2);
static_assert(crop_source(0, -1, 4, PadMode::zero) == -1 && crop_source(3, 1, 4, PadMode::reflect) == 2);
static_assert(flip_source(0, 5, true) == 4);

TEST(AugmentMath, ReflectIndexMirrorsWithoutRepeatingTheEdge) {
  // [a b c d] reflected: ... d c b | a b c d | c b a b ...
  const int expected[] = {3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1};  // i = -3 .. 7
  for (int i = -3; i <= 7; ++i) EXPECT_EQ(reflect_index(i, 4), expected[i + 3]) << i;
  EXPECT_EQ(reflect_index(-5, 1), 0);
  EXPECT_EQ(reflect_index(3, 2), 1);  // [a b] -> ... a b | a b | a b ...
  EXPECT_EQ(reflect_index(-1, 2), 1);
}

TEST(AugmentMath, CropSourceAndFlip) {
  EXPECT_EQ(crop_source(0, 2, 4, PadMode::zero), 2);
  EXPECT_EQ(crop_source(2, 2, 4, PadMode::zero), -1);
  EXPECT_EQ(crop_source(0, -2, 4, PadMode::zero), -1);
  EXPECT_EQ(crop_source(1, -1, 4, PadMode::zero), 0);
  EXPECT_EQ(crop_source(0, -2, 4, PadMode::reflect), 2);
  EXPECT_EQ(crop_source(3, 2, 4, PadMode::reflect), 1);
  EXPECT_EQ(flip_source(1, 4, false), 1);
  EXPECT_EQ(flip_source(1, 4, true), 2);
}

TEST(AugmentMath, CutoutRegion) {
  // Side 2 centred at (1, 1): rows 0-1, columns 0-1.
  int count = 0;
  for (int y = -2; y < 6; ++y)
    for (int x = -2; x < 6; ++x) {
      const bool inside = in_cutout(y, x, 1, 1, 2);
      EXPECT_EQ(inside, y >= 0 && y <= 1 && x >= 0 && x <= 1) << y << "," << x;
      count += inside;
    }
  EXPECT_EQ(count, 4);
  // Side 3 centred at (5, 0): rows 4-6, columns -1-1.
  EXPECT_TRUE(in_cutout(4, -1, 5, 0, 3));
  EXPECT_TRUE(in_cutout(6, 1, 5, 0, 3));
  EXPECT_FALSE(in_cutout(7, 0, 5, 0, 3));
  EXPECT_FALSE(in_cutout(5, 2, 5, 0, 3));
  EXPECT_FALSE(in_cutout(0, 0, 0, 0, 0));
}

// A 4x4 one-channel image with v(y, x) = 10 y + x, normalised with mean 0 and std 1 so that
// output * 255 gives back the raw value read.
struct Fixture4x4 {
  std::vector<uint8_t> image;
  Fixture4x4() {
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) image.push_back(static_cast<uint8_t>(10 * y + x));
  }
  std::vector<int> run(const AugmentConfig& config, const AugmentParams& p, float mean = 0, float std = 1) const {
    ImageTransform t(4, 4, 1, {mean}, {std}, config, true);
    std::vector<float> out(16, std::nanf(""));
    t.apply(image.data(), p, out.data());
    std::vector<int> raw;
    for (float v : out) raw.push_back(static_cast<int>(std::lround((v * std + mean) * 255.0f)));
    return raw;
  }
};

TEST(ImageTransformTest, ReflectCropHandChecked) {
  AugmentConfig config;
  config.crop_padding = 2;
  config.padding_mode = "reflect";
  AugmentParams p;
  p.shift_y = -2;
  p.shift_x = 1;
  // Rows read 2, 1, 0, 1; columns read 1, 2, 3, 2.
  EXPECT_EQ(Fixture4x4().run(config, p), (std::vector<int>{21, 22, 23, 22,  //
                                                           11, 12, 13, 12,  //
                                                           1, 2, 3, 2,      //
                                                           11, 12, 13, 12}));
  p.flip = true;  // columns read crop columns 3, 2, 1, 0 -> source 2, 3, 2, 1
  EXPECT_EQ(Fixture4x4().run(config, p), (std::vector<int>{22, 23, 22, 21,  //
                                                           12, 13, 12, 11,  //
                                                           2, 3, 2, 1,      //
                                                           12, 13, 12, 11}));
}

TEST(ImageTransformTest, ZeroPaddedCropHandChecked) {
  AugmentConfig config;
  config.crop_padding = 1;
  config.padding_mode = "zero";
  AugmentParams p;
  p.shift_y = 1;
  p.shift_x = -1;
  EXPECT_EQ(Fixture4x4().run(config, p), (std::vector<int>{0, 10, 11, 12,  //
                                                           0, 20, 21, 22,  //
                                                           0, 30, 31, 32,  //
                                                           0, 0, 0, 0}));
  // Padding is a black pixel before normalisation: (0 - mean) / std.
  ImageTransform t(4, 4, 1, {0.5f}, {0.25f}, config, true);
  std::vector<float> out(16, std::nanf(""));
  t.apply(Fixture4x4().image.data(), p, out.data());
  EXPECT_FLOAT_EQ(out[0], -2.0f);
  EXPECT_FLOAT_EQ(out[15], -2.0f);
  EXPECT_NEAR(out[1], (10 / 255.0 - 0.5) / 0.25, 1e-5);
}

TEST(ImageTransformTest, IdentityParamsCopyTheImage) {
  AugmentConfig config;
  EXPECT_EQ(Fixture4x4().run(config, AugmentParams{}),
            (std::vector<int>{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33}));
  AugmentParams flip;
  flip.flip = true;
  EXPECT_EQ(Fixture4x4().run(config, flip),
            (std::vector<int>{3, 2, 1, 0, 13, 12, 11, 10, 23, 22, 21, 20, 33, 32, 31, 30}));
}

TEST(ImageTransformTest, CutoutZeroesAClippedSquareAfterNormalisation) {
  AugmentConfig config;
  config.crop_padding = 0;
  config.cutout = 2;
  AugmentParams p;
  p.cutout_y = 3;
  p.cutout_x = 0;  // square rows 2-3, columns -1-0: only (2, 0) and (3, 0) are inside the image
  ImageTransform t(4, 4, 1, {0.9f}, {0.5f}, config, true);  // no pixel normalises to 0 by itself
  std::vector<float> out(16, std::nanf(""));
  const Fixture4x4 f;
  t.apply(f.image.data(), p, out.data());
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const float v = out[static_cast<size_t>(y * 4 + x)];
      if ((y == 2 || y == 3) && x == 0) {
        EXPECT_EQ(v, 0.0f) << y << "," << x;
      } else {
        EXPECT_NEAR(v, (f.image[static_cast<size_t>(y * 4 + x)] / 255.0 - 0.9) / 0.5, 1e-5) << y << "," << x;
      }
    }
}

TEST(ImageTransformTest, NormalisationMatchesTheFormula) {
  Rng rng(3);
  const int h = 5, w = 6, c = 3;
  std::vector<uint8_t> img(static_cast<size_t>(h * w * c));
  for (uint8_t& v : img) v = static_cast<uint8_t>(rng.below(256));
  const std::vector<float> mean = {0.4914f, 0.4822f, 0.4465f}, std = {0.2470f, 0.2435f, 0.2616f};
  AugmentConfig config;
  ImageTransform t(h, w, c, mean, std, config, false);
  EXPECT_FALSE(t.augmenting());
  std::vector<float> out(img.size(), std::nanf(""));
  t.apply(img.data(), t.params(3, 12345), out.data());
  for (size_t i = 0; i < img.size(); ++i) {
    const size_t ch = i % 3;
    const double expected = (img[i] / 255.0 - mean[ch]) / std[ch];
    ASSERT_NEAR(out[i], expected, 1e-5) << i;
  }
  EXPECT_NEAR(t.normalized(1, 255), (1.0 - 0.4822) / 0.2435, 1e-5);
  EXPECT_NEAR(t.normalized(2, 0), -0.4465 / 0.2616, 1e-5);
}

TEST(AugmentParamsTest, DrawsCoverTheRangesAndAreIndependent) {
  std::set<int> shifts_y, shifts_x, cut_y;
  int flips = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const uint64_t seed = augment_image_seed(7, 2, i);
    const AugmentParams p = draw_augment_params(seed, 4, true, 8, 32, 30);
    ASSERT_GE(p.shift_y, -4);
    ASSERT_LE(p.shift_y, 4);
    ASSERT_GE(p.shift_x, -4);
    ASSERT_LE(p.shift_x, 4);
    ASSERT_GE(p.cutout_y, 0);
    ASSERT_LT(p.cutout_y, 32);
    ASSERT_GE(p.cutout_x, 0);
    ASSERT_LT(p.cutout_x, 30);
    shifts_y.insert(p.shift_y);
    shifts_x.insert(p.shift_x);
    cut_y.insert(p.cutout_y);
    flips += p.flip;
    // Turning the other augmentations off leaves the crop draw unchanged.
    const AugmentParams crop_only = draw_augment_params(seed, 4, false, 0, 32, 30);
    ASSERT_EQ(crop_only.shift_y, p.shift_y);
    ASSERT_EQ(crop_only.shift_x, p.shift_x);
    ASSERT_FALSE(crop_only.flip);
  }
  EXPECT_EQ(shifts_y.size(), 9u);
  EXPECT_EQ(shifts_x.size(), 9u);
  EXPECT_EQ(cut_y.size(), 32u);
  EXPECT_NEAR(flips, n / 2, 4 * std::sqrt(n / 4.0));
  const AugmentParams none = draw_augment_params(99, 0, false, 0, 32, 32);
  EXPECT_EQ(none.shift_y, 0);
  EXPECT_EQ(none.shift_x, 0);
  // The per-image seed depends on each of (seed, epoch, example).
  EXPECT_NE(augment_image_seed(1, 2, 3), augment_image_seed(1, 2, 4));
  EXPECT_NE(augment_image_seed(1, 2, 3), augment_image_seed(1, 3, 3));
  EXPECT_NE(augment_image_seed(1, 2, 3), augment_image_seed(2, 2, 3));
}

TEST(ImageTransformTest, RejectsBadSettings) {
  AugmentConfig config;
  EXPECT_THROW(ImageTransform(8, 8, 3, {0.5f, 0.5f}, {1, 1, 1}, config, true), ConfigError);
  EXPECT_THROW(ImageTransform(8, 8, 3, {0.5f, 0.5f, 0.5f}, {1, 0, 1}, config, true), ConfigError);
  config.padding_mode = "wrap";
  EXPECT_THROW(ImageTransform(8, 8, 1, {0.5f}, {1}, config, true), ConfigError);
  config.padding_mode = "reflect";
  config.crop_padding = 8;
  EXPECT_THROW(ImageTransform(8, 8, 1, {0.5f}, {1}, config, true), ConfigError);
  config.crop_padding = 7;
  EXPECT_NO_THROW(ImageTransform(8, 8, 1, {0.5f}, {1}, config, true));
  config.crop_padding = -1;
  EXPECT_THROW(ImageTransform(8, 8, 1, {0.5f}, {1}, config, true), ConfigError);
}

TEST(ImageTransformTest, AugmentOffGivesIdentityParams) {
  AugmentConfig config;
  config.cutout = 4;
  ImageTransform t(8, 8, 1, {0.5f}, {1}, config, false);
  for (int64_t s = 0; s < 50; ++s) {
    const AugmentParams p = t.params(1, s);
    ASSERT_EQ(p.shift_y, 0);
    ASSERT_EQ(p.shift_x, 0);
    ASSERT_FALSE(p.flip);
  }
  ImageTransform on(8, 8, 1, {0.5f}, {1}, config, true);
  int changed = 0;
  for (int64_t s = 0; s < 50; ++s) changed += on.params(1, s).shift_y != 0 || on.params(1, s).flip;
  EXPECT_GT(changed, 30);
}

TEST(ImageTransformTest, RandomFlipParamsAreTheSeededDraws) {
  // flip_mode random keeps the draws of earlier versions: draw_augment_params from the image seed.
  AugmentConfig config;
  config.crop_padding = 3;
  config.cutout = 5;
  ImageTransform t(9, 7, 3, {0.5f, 0.5f, 0.5f}, {1, 1, 1}, config, true, 1234);
  EXPECT_EQ(t.spec().flip, FlipMode::random);
  for (int64_t epoch = 0; epoch < 3; ++epoch)
    for (int64_t e = 0; e < 40; ++e) {
      const AugmentParams a = t.params(epoch, e);
      const AugmentParams b = draw_augment_params(augment_image_seed(1234, epoch, e), 3, true, 5, 9, 7);
      ASSERT_TRUE(a.shift_y == b.shift_y && a.shift_x == b.shift_x && a.flip == b.flip && a.cutout_y == b.cutout_y &&
                  a.cutout_x == b.cutout_x)
          << epoch << "," << e;
    }
}

TEST(ImageTransformTest, FlipModes) {
  EXPECT_EQ(parse_flip_mode(true, "random"), FlipMode::random);
  EXPECT_EQ(parse_flip_mode(true, "alternating"), FlipMode::alternating);
  EXPECT_EQ(parse_flip_mode(false, "alternating"), FlipMode::none);
  const std::string message = testing::error_of<ConfigError>([] { parse_flip_mode(true, "sometimes"); });
  EXPECT_NE(message.find("data.augment.flip_mode"), std::string::npos) << message;

  AugmentConfig config;
  config.flip_mode = "alternating";
  ImageTransform t(8, 8, 1, {0.5f}, {1}, config, true, 77);
  EXPECT_EQ(t.spec().flip, FlipMode::alternating);
  const int n = 2000;
  int flipped = 0;
  for (int64_t e = 0; e < n; ++e) {
    const bool f0 = t.params(0, e).flip;
    flipped += f0;
    for (int64_t epoch = 1; epoch < 4; ++epoch)  // the other way in every odd epoch
      ASSERT_EQ(t.params(epoch, e).flip, (epoch % 2 == 1) != f0) << e << " epoch " << epoch;
    // The crop does not depend on the flip mode.
    ImageTransform r(8, 8, 1, {0.5f}, {1}, AugmentConfig{}, true, 77);
    ASSERT_EQ(t.params(2, e).shift_y, r.params(2, e).shift_y);
  }
  EXPECT_NEAR(flipped, n / 2, 4 * std::sqrt(n / 4.0));
  config.flip = false;
  ImageTransform off(8, 8, 1, {0.5f}, {1}, config, true, 77);
  for (int64_t e = 0; e < 50; ++e) ASSERT_FALSE(off.params(e % 2, e).flip);
}

TEST(ImageTransformTest, ApplyIsAugmentedPixelBitForBit) {
  // The lookup-table loops of apply() against the one per-pixel definition the GPU kernel uses.
  Rng rng(5);
  for (const char* mode : {"zero", "reflect"})
    for (int c : {1, 3}) {
      const int h = 7, w = 6;
      AugmentConfig config;
      config.padding_mode = mode;
      config.crop_padding = 3;
      config.cutout = 3;
      config.flip_mode = "alternating";
      std::vector<float> mean, std;
      for (int ch = 0; ch < c; ++ch) {
        mean.push_back(rng.uniform(0.3f, 0.6f));
        std.push_back(rng.uniform(0.2f, 0.3f));
      }
      ImageTransform t(h, w, c, mean, std, config, true, 9);
      std::vector<uint8_t> img(static_cast<size_t>(h * w * c));
      for (uint8_t& v : img) v = static_cast<uint8_t>(rng.below(256));
      for (int64_t e = 0; e < 30; ++e) {
        const AugmentParams p = t.params(e % 3, e);
        std::vector<float> out(img.size(), std::nanf(""));
        t.apply(img.data(), p, out.data());
        size_t i = 0;
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch, ++i) {
              const float want = augmented_pixel(img.data(), y, x, ch, h, w, c, p, t.spec().pad_mode, 3,
                                                 mean[static_cast<size_t>(ch)], std[static_cast<size_t>(ch)]);
              ASSERT_EQ(std::memcmp(&out[i], &want, sizeof want), 0) << mode << " C" << c << " " << y << "," << x;
            }
      }
    }
}

TEST(NormalizedImagesTest, FirstImagesUnaugmented) {
  ImageDataset data;
  data.size = 5;
  data.height = 3;
  data.width = 2;
  data.channels = 3;
  data.source = "tiny";
  Rng rng(8);
  for (int64_t i = 0; i < 5 * 18; ++i) data.pixels.push_back(static_cast<uint8_t>(rng.below(256)));
  data.labels = {0, 1, 0, 1, 0};
  data.class_names = {"a", "b"};
  const std::vector<float> mean = {0.4f, 0.5f, 0.6f}, std = {0.2f, 0.25f, 0.3f};
  const Tensor x = normalized_images(data, 3, mean, std);
  ASSERT_EQ(x.shape(), (Shape{3, 3, 2, 3}));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const size_t ch = static_cast<size_t>(i % 3);
    const double expected = (data.pixels[static_cast<size_t>(i)] / 255.0 - mean[ch]) / std[ch];
    ASSERT_NEAR(x.f32()[i], expected, 1e-6) << i;
  }
  EXPECT_EQ(normalized_images(data, 0, mean, std).numel(), 0);
  EXPECT_EQ(normalized_images(data, 5, mean, std).dim(0), 5);
  const std::string message = testing::error_of<ConfigError>([&] { normalized_images(data, 6, mean, std); });
  EXPECT_NE(message.find("train.init_images"), std::string::npos) << message;
  EXPECT_THROW(normalized_images(data, 2, {0.5f}, {1.0f}), ConfigError);  // one mean for 3 channels
}

}  // namespace
}  // namespace convnet
