// The data kernels (cuda/data_kernels.cu: axpby, augment_batch, image_view) run on the CPU under
// the fiber emulator and checked bit for bit against the cpu reference (core/cpu/axpby.cpp,
// core/cpu/image_ops.cpp), which the GPU backends must reproduce exactly: the same operations in
// the same order, the pixel math shared through core/base/augment_math.h. Inputs are random with
// odd sizes; outputs start as NaN (the 0xff poison of DeviceBuf), so a skipped element fails, and
// guard zones catch writes out of bounds. A few checks against float64 formulas and hand-derived
// mirror images make sure the comparison is not between two copies of one mistake.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/base/augment_math.h"
#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cpu/axpby.h"
#include "core/cpu/copy_channels.h"
#include "core/cpu/image_ops.h"
#include "cuda/data_kernels.h"
#include "tests/common/test_util.h"
#include "tests/emu/device_buffer.h"
#include "tests/emu/emu_runtime.h"

namespace convnet::cuda {
namespace {

using convnet::emu_test::bits_equal;
using convnet::emu_test::DeviceBuf;
using convnet::testing::poisoned;
using convnet::testing::random_tensor;

// A test name from a case's description: its letters and digits, the rest as '_'.
template <class Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name;
  for (const char* p = info.param.what; *p != 0; ++p) name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
  return name;
}

// ---------------------------------------------------------------------------------------------
// axpby

struct AxpbyCase {
  int64_t n;
  float alpha, beta;
  bool alias;  // x and y the same array
  const char* what;
};

void PrintTo(const AxpbyCase& c, std::ostream* os) {
  *os << c.what;
}

class AxpbyEmulation : public ::testing::TestWithParam<AxpbyCase> {};

TEST_P(AxpbyEmulation, MatchesCpuBitForBit) {
  const AxpbyCase& c = GetParam();
  Rng rng(static_cast<uint64_t>(c.n) * 31 + (c.alias ? 1 : 0));
  const Shape shape{c.n};
  const Tensor x = random_tensor(shape, rng, -3.0f, 3.0f);
  const Tensor y0 = random_tensor(shape, rng, -3.0f, 3.0f);

  Tensor expected(shape);
  DeviceBuf gx = DeviceBuf::of(x, true);
  DeviceBuf gy(x.bytes(), true);  // NaN until written: beta == 0 must not read it
  if (c.alias) {
    expected = x.clone();
    cpu::axpby(c.alpha, expected, c.beta, expected);
    launch_axpby(c.alpha, gx.f(), c.beta, gx.f(), c.n, nullptr);
    EXPECT_TRUE(bits_equal(gx.download(shape), expected)) << c.what;
    EXPECT_TRUE(gx.guards_intact());
  } else {
    if (c.beta == 0.0f) {
      expected = poisoned(shape);  // NaN garbage in y, as on the device
    } else {
      expected = y0.clone();
      std::memcpy(gy.raw(), y0.raw(), y0.bytes());
    }
    cpu::axpby(c.alpha, x, c.beta, expected);
    launch_axpby(c.alpha, gx.f(), c.beta, gy.f(), c.n, nullptr);
    EXPECT_TRUE(bits_equal(gy.download(shape), expected)) << c.what;
    EXPECT_TRUE(bits_equal(gx.download(shape), x)) << c.what << ": x changed";
    EXPECT_TRUE(gy.guards_intact());
  }
  // Independently: each product rounded to float, then the sum rounded (no fused multiply-add).
  const Tensor& y_in = c.alias ? x : y0;
  for (int64_t i = 0; i < c.n; ++i) {
    const float ax = static_cast<float>(static_cast<double>(c.alpha) * x.f32()[i]);
    const float by = c.beta == 0.0f ? 0.0f : static_cast<float>(static_cast<double>(c.beta) * y_in.f32()[i]);
    ASSERT_EQ(expected.f32()[i], static_cast<float>(static_cast<double>(ax) + by)) << c.what << " [" << i << "]";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, AxpbyEmulation,
                         ::testing::Values(AxpbyCase{1, 0.5f, 2.0f, false, "one element"},
                                           AxpbyCase{1029, 0.7f, -1.3f, false, "general"},
                                           AxpbyCase{4099, 0.99f, 0.01f, false, "ema-like"},
                                           AxpbyCase{777, 1.5f, 0.0f, false, "beta 0 over NaN garbage"},
                                           AxpbyCase{513, -0.3f, 1.1f, true, "x aliases y"},
                                           AxpbyCase{300, 2.0f, 0.0f, true, "x aliases y, beta 0"}),
                         case_name<AxpbyCase>);

TEST(AxpbyEmulationEdge, EmptyIsANoOp) {
  DeviceBuf g(16);
  launch_axpby(1.0f, g.f(), 1.0f, g.f(), 0, nullptr);
  EXPECT_TRUE(bits_equal(g.download({4}), DeviceBuf(16).download({4})));  // still all poison
}

// ---------------------------------------------------------------------------------------------
// copy_channels (the concat layer): a channel range of every row, the rest of dst untouched

struct CopyChannelsCase {
  const char* what;
  int64_t rows, src_c, src_offset, dst_c, dst_offset, channels;
};

class CopyChannelsEmulation : public ::testing::TestWithParam<CopyChannelsCase> {};

TEST_P(CopyChannelsEmulation, MatchesCpuAndLeavesOtherChannels) {
  const CopyChannelsCase& c = GetParam();
  Rng rng(41);
  const Tensor src = random_tensor({c.rows, c.src_c}, rng);
  DeviceBuf gsrc = DeviceBuf::of(src), gdst(static_cast<size_t>(c.rows * c.dst_c) * sizeof(float));
  Tensor expected = gdst.download({c.rows, c.dst_c});  // the device poison, which untouched channels keep
  cpu::copy_channels(src, c.src_offset, expected, c.dst_offset, c.channels);
  launch_copy_channels(gsrc.f(), c.src_c, c.src_offset, gdst.f(), c.dst_c, c.dst_offset, c.rows, c.channels, nullptr);
  const Tensor got = gdst.download({c.rows, c.dst_c});
  EXPECT_TRUE(gdst.guards_intact()) << c.what;
  EXPECT_TRUE(bits_equal(got, expected)) << c.what;  // NaN poison where untouched, in both
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t k = 0; k < c.dst_c; ++k) {
      const float v = got.f32()[r * c.dst_c + k];
      const bool copied = k >= c.dst_offset && k < c.dst_offset + c.channels;
      if (copied) {
        ASSERT_EQ(v, src.f32()[r * c.src_c + c.src_offset + k - c.dst_offset]) << c.what << " " << r << "," << k;
      } else {
        ASSERT_TRUE(std::isnan(v)) << c.what << " " << r << "," << k;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, CopyChannelsEmulation,
                         ::testing::Values(CopyChannelsCase{"into the front", 37, 5, 0, 12, 0, 5},
                                           CopyChannelsCase{"into the back", 37, 7, 0, 12, 5, 7},
                                           CopyChannelsCase{"out of the middle", 129, 16, 3, 9, 0, 9},
                                           CopyChannelsCase{"one channel", 1025, 3, 1, 4, 2, 1},
                                           CopyChannelsCase{"whole rows", 64, 8, 0, 8, 0, 8}),
                         case_name<CopyChannelsCase>);

// ---------------------------------------------------------------------------------------------
// augment_batch

struct AugmentCase {
  const char* what;
  int64_t m, n, h, w, c;
  int64_t first, order_len;
  int pad;
  PadMode pad_mode;
  FlipMode flip;
  int cutout;
  int64_t epoch;
};

// Host inputs of one augment_batch problem.
struct AugmentProblem {
  Tensor images, order;
  AugmentBatchSpec spec;
};

AugmentProblem make_problem(const AugmentCase& c, uint64_t seed) {
  Rng rng(seed);
  AugmentProblem p;
  p.images = Tensor({c.m, c.h, c.w, c.c}, DType::u8);
  for (int64_t i = 0; i < p.images.numel(); ++i) p.images.data<uint8_t>()[i] = static_cast<uint8_t>(rng.below(256));
  p.order = Tensor({c.order_len}, DType::i32);
  for (int64_t i = 0; i < c.order_len; ++i)  // repeats allowed, every image reachable
    p.order.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.m)));
  p.spec.augment.seed = seed * 7 + 3;
  p.spec.augment.pad = c.pad;
  p.spec.augment.pad_mode = c.pad_mode;
  p.spec.augment.flip = c.flip;
  p.spec.augment.cutout = c.cutout;
  p.spec.epoch = c.epoch;
  for (int64_t ch = 0; ch < c.c; ++ch) {
    p.spec.mean[ch] = 0.3f + 0.1f * static_cast<float>(rng.uniform());
    p.spec.std[ch] = 0.2f + 0.1f * static_cast<float>(rng.uniform());
  }
  return p;
}

// The emulated kernel's output for `p` (a poisoned "device" buffer), as a host tensor.
Tensor emulated_augment(const AugmentProblem& p, int64_t first, int64_t n) {
  const Shape out_shape{n, p.images.dim(1), p.images.dim(2), p.images.dim(3)};
  DeviceBuf gimages = DeviceBuf::of(p.images), gorder = DeviceBuf::of(p.order);
  DeviceBuf gout(static_cast<size_t>(shape_numel(out_shape)) * sizeof(float));
  Tensor out_meta(out_shape);
  const AugmentGeometry g = OpChecks::cpu("augment_batch").augment_batch(p.images, p.order, first, out_meta, p.spec);
  launch_augment_batch(gimages.as<uint8_t>(), gorder.as<int32_t>(), g, gout.f(), p.spec, nullptr);
  EXPECT_TRUE(gout.guards_intact());
  EXPECT_TRUE(bits_equal(gimages.download(p.images.shape(), DType::u8), p.images)) << "images changed";
  return gout.download(out_shape);
}

Tensor cpu_augment(const AugmentProblem& p, int64_t first, int64_t n) {
  Tensor out = poisoned({n, p.images.dim(1), p.images.dim(2), p.images.dim(3)});
  cpu::augment_batch(p.images, p.order, first, out, p.spec);
  return out;
}

void PrintTo(const AugmentCase& c, std::ostream* os) {
  *os << c.what;
}

class AugmentEmulation : public ::testing::TestWithParam<AugmentCase> {};

TEST_P(AugmentEmulation, MatchesCpuBitForBit) {
  const AugmentCase& c = GetParam();
  const AugmentProblem p = make_problem(c, std::hash<std::string>{}(c.what));
  const Tensor expected = cpu_augment(p, c.first, c.n);
  const Tensor got = emulated_augment(p, c.first, c.n);
  EXPECT_TRUE(bits_equal(got, expected)) << c.what;
  for (int64_t i = 0; i < got.numel(); ++i) ASSERT_FALSE(std::isnan(got.f32()[i])) << c.what << " [" << i << "]";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AugmentEmulation,
    ::testing::Values(
        AugmentCase{"zero pad, random flip, C3", 23, 9, 9, 7, 3, 5, 20, 3, PadMode::zero, FlipMode::random, 0, 2},
        AugmentCase{"reflect pad, alternating flip, cutout, C1", 17, 11, 8, 11, 1, 0, 11, 2, PadMode::reflect,
                    FlipMode::alternating, 4, 3},
        AugmentCase{"alternating flip epoch 0, reflect 4 on 5x6, C3", 9, 6, 5, 6, 3, 2, 9, 4, PadMode::reflect,
                    FlipMode::alternating, 0, 0},
        AugmentCase{"cutout only, no flip, C3", 7, 5, 5, 5, 3, 1, 8, 0, PadMode::zero, FlipMode::none, 3, 1},
        AugmentCase{"zero pad wider than the image, cutout, C1", 5, 4, 3, 4, 1, 0, 4, 6, PadMode::zero,
                    FlipMode::random, 5, 7},
        AugmentCase{"everything off, C4", 6, 3, 4, 3, 4, 3, 6, 0, PadMode::zero, FlipMode::none, 0, 0},
        AugmentCase{"CIFAR-sized batch", 40, 33, 32, 32, 3, 7, 40, 4, PadMode::reflect, FlipMode::random, 12, 5},
        AugmentCase{"empty batch", 3, 0, 4, 4, 3, 2, 3, 1, PadMode::zero, FlipMode::random, 0, 0}),
    case_name<AugmentCase>);

TEST(AugmentEmulationEdge, IdentityIsTheNormalisationFormula) {
  // Independent of augment_math.h: all choices off gives (v / 255 - mean) / std per channel.
  const AugmentCase c{"identity", 4, 4, 5, 3, 3, 0, 4, 0, PadMode::zero, FlipMode::none, 0, 0};
  const AugmentProblem p = make_problem(c, 11);
  const Tensor got = emulated_augment(p, 0, 4);
  const int64_t image = 5 * 3 * 3;
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t e = p.order.data<int32_t>()[i];
    for (int64_t k = 0; k < image; ++k) {
      const int64_t ch = k % 3;
      const double v = p.images.data<uint8_t>()[e * image + k];
      const double expected = (v / 255.0 - p.spec.mean[ch]) / p.spec.std[ch];
      ASSERT_NEAR(got.f32()[i * image + k], expected, 1e-6 * (1 + std::abs(expected))) << i << "," << k;
    }
  }
}

TEST(AugmentEmulationEdge, AlternatingFlipMirrorsEveryImageBetweenEpochs) {
  // No crop or cutout: epoch e + 1 shows every image mirrored relative to epoch e.
  AugmentCase c{"alternating", 12, 12, 4, 5, 2, 0, 12, 0, PadMode::zero, FlipMode::alternating, 0, 0};
  const AugmentProblem p0 = make_problem(c, 5);
  AugmentProblem p1 = p0;
  p1.spec.epoch = 1;
  const Tensor e0 = emulated_augment(p0, 0, 12), e1 = emulated_augment(p1, 0, 12);
  int flipped = 0;
  for (int64_t i = 0; i < 12; ++i) {
    bool mirrored = true, same = true;
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t ch = 0; ch < 2; ++ch) {
          const float a = e0.f32()[((i * 4 + y) * 5 + x) * 2 + ch];
          mirrored &= a == e1.f32()[((i * 4 + y) * 5 + (4 - x)) * 2 + ch];
          same &= a == e1.f32()[((i * 4 + y) * 5 + x) * 2 + ch];
        }
    EXPECT_TRUE(mirrored) << "image " << i;
    EXPECT_FALSE(same) << "image " << i << " (random pixels are never symmetric)";
    // Epoch 0 flips by the image's own bit: compare with the raw image.
    const int64_t e = p0.order.data<int32_t>()[i];
    const uint8_t raw = p0.images.data<uint8_t>()[e * 40];  // pixel (0, 0), channel 0
    const float first = e0.f32()[i * 40];
    flipped += first != normalize_pixel(raw, p0.spec.mean[0], p0.spec.std[0]);
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 12);
}

TEST(AugmentEmulationEdge, IndexOutsideTheDataSetGivesNan) {
  const AugmentCase c{"bad index", 6, 7, 5, 4, 3, 1, 9, 2, PadMode::reflect, FlipMode::random, 2, 1};
  AugmentProblem p = make_problem(c, 21);
  // Positions 1 + {1, 3, 4, 6}: one past the end, negative, far past the end, the most negative.
  const int32_t bad[] = {6, -1, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()};
  const int64_t bad_pos[] = {1, 3, 4, 6};
  for (int k = 0; k < 4; ++k) p.order.data<int32_t>()[1 + bad_pos[k]] = bad[k];
  EXPECT_THROW(cpu_augment(p, 1, 7), Error);  // the cpu reference refuses the same input

  const Tensor got = emulated_augment(p, 1, 7);
  AugmentProblem valid = p;  // the valid images must still match the cpu bit for bit
  valid.order = p.order.clone();
  for (int64_t pos : bad_pos) valid.order.data<int32_t>()[1 + pos] = 0;
  const Tensor expected = cpu_augment(valid, 1, 7);
  const int64_t image = 5 * 4 * 3;
  for (int64_t i = 0; i < 7; ++i) {
    const bool is_bad = i == 1 || i == 3 || i == 4 || i == 6;
    for (int64_t k = 0; k < image; ++k) {
      const float g = got.f32()[i * image + k];
      if (is_bad) {
        ASSERT_TRUE(std::isnan(g)) << "image " << i << " element " << k;
      } else {
        ASSERT_EQ(std::memcmp(&g, &expected.f32()[i * image + k], sizeof(float)), 0) << "image " << i << " " << k;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// image_view

struct ViewCase {
  Shape shape;
  ImageView view;
  const char* what;
};

void PrintTo(const ViewCase& c, std::ostream* os) {
  *os << c.what;
}

class ImageViewEmulation : public ::testing::TestWithParam<ViewCase> {};

TEST_P(ImageViewEmulation, MatchesCpuBitForBit) {
  const ViewCase& c = GetParam();
  Rng rng(std::hash<std::string>{}(c.what));
  const Tensor x = random_tensor(c.shape, rng, -2.0f, 2.0f);
  Tensor expected = poisoned(c.shape);
  cpu::image_view(x, expected, c.view);
  DeviceBuf gx = DeviceBuf::of(x), gy(x.bytes());
  launch_image_view(gx.f(), gy.f(), c.shape[0], c.shape[1], c.shape[2], c.shape[3], c.view, nullptr);
  const Tensor got = gy.download(c.shape);
  EXPECT_TRUE(bits_equal(got, expected)) << c.what;
  EXPECT_TRUE(gy.guards_intact());
  // Independently: element (n, oy, ox, ch) from the shift and mirror conventions of ImageView.
  const int64_t h = c.shape[1], w = c.shape[2], ch_count = c.shape[3];
  for (int64_t n = 0; n < c.shape[0]; ++n)
    for (int64_t oy = 0; oy < h; ++oy)
      for (int64_t ox = 0; ox < w; ++ox) {
        int64_t sy = oy + c.view.shift_y;
        int64_t sx = (c.view.flip ? w - 1 - ox : ox) + c.view.shift_x;
        bool zero = false;
        for (auto [s, size] : {std::pair<int64_t*, int64_t>{&sy, h}, {&sx, w}}) {
          if (*s >= 0 && *s < size) continue;
          if (c.view.pad_mode == PadMode::zero) zero = true;
          *s = *s < 0 ? -*s : 2 * (size - 1) - *s;  // |shift| < size: one reflection suffices
        }
        for (int64_t ch = 0; ch < ch_count; ++ch) {
          const float want = zero ? 0.0f : x.f32()[((n * h + sy) * w + sx) * ch_count + ch];
          ASSERT_EQ(got.f32()[((n * h + oy) * w + ox) * ch_count + ch], want) << c.what;
        }
      }
}

ImageView view(int shift_y, int shift_x, bool flip, PadMode mode) {
  ImageView v;
  v.shift_y = shift_y;
  v.shift_x = shift_x;
  v.flip = flip;
  v.pad_mode = mode;
  return v;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ImageViewEmulation,
    ::testing::Values(ViewCase{{3, 9, 7, 3}, view(0, 0, false, PadMode::reflect), "identity"},
                      ViewCase{{3, 9, 7, 3}, view(0, 0, true, PadMode::reflect), "flip"},
                      ViewCase{{2, 5, 6, 1}, view(1, -1, false, PadMode::reflect), "shift reflect C1"},
                      ViewCase{{2, 5, 6, 1}, view(-1, 1, true, PadMode::reflect), "shift flip reflect C1"},
                      ViewCase{{4, 6, 5, 3}, view(-2, 3, true, PadMode::zero), "shift flip zero"},
                      ViewCase{{1, 4, 4, 2}, view(3, -3, false, PadMode::zero), "largest shift zero"},
                      ViewCase{{2, 7, 9, 4}, view(-6, 8, true, PadMode::reflect), "largest shift reflect C4"},
                      ViewCase{{0, 4, 4, 3}, view(1, 1, true, PadMode::zero), "empty batch"}),
    case_name<ViewCase>);

}  // namespace
}  // namespace convnet::cuda
