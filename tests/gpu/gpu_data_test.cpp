// The data ops of the GPU backends (`cuda` and `cudnn`: axpby, augment_batch, image_view) against
// the cpu backend, bit for bit: the kernels compute the cpu's operations in the same order (no
// FMA contraction, the shared constexpr pixel math of core/base/augment_math.h). Device outputs
// are poisoned with NaN first, so an element the kernel skips fails. Also: an order index outside
// the data set gives NaN for that image (the cpu throws), and DeviceDataLoader on the GPU gives
// the batches DataLoader gives on the host. Skips with a reason without a device.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "cuda/device.h"
#include "datasets/device_loader.h"
#include "datasets/loader.h"
#include "tests/common/gpu_test_util.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::bitwise_equal;
using testing::poisoned;
using testing::random_tensor;

// Each op on a GPU backend against the cpu backend (testing::GpuVsCpuTest).
class GpuData : public testing::GpuVsCpuTest {};

// ---------------------------------------------------------------- axpby

TEST_P(GpuData, AxpbyMatchesCpuBitForBit) {
  Rng rng(1);
  for (int64_t n : {int64_t{1}, int64_t{1029}, int64_t{300001}}) {
    SCOPED_TRACE(fmt::format("n = {}", n));
    const Tensor x = random_tensor({n}, rng, -3.0f, 3.0f), y0 = random_tensor({n}, rng, -3.0f, 3.0f);
    // General alpha and beta.
    Tensor y = y0.clone();
    cpu().axpby(0.7f, x, -1.3f, y);
    Tensor gy = up(y0);
    gpu().axpby(0.7f, up(x), -1.3f, gy);
    EXPECT_TRUE(bitwise_equal(down(gy), y)) << "general";
    // beta == 0 over NaN garbage: y is not read.
    Tensor z = poisoned({n});
    cpu().axpby(1.5f, x, 0.0f, z);
    Tensor gz = poison({n});
    gpu().axpby(1.5f, up(x), 0.0f, gz);
    EXPECT_TRUE(bitwise_equal(down(gz), z)) << "beta 0";
    for (int64_t i = 0; i < n; ++i) ASSERT_FALSE(std::isnan(z.f32()[i]));
    // x aliasing y.
    Tensor w = x.clone();
    cpu().axpby(0.99f, w, 0.01f, w);
    Tensor gw = up(x);
    gpu().axpby(0.99f, gw, 0.01f, gw);
    EXPECT_TRUE(bitwise_equal(down(gw), w)) << "x aliases y";
  }
}

// ---------------------------------------------------------------- copy_channels

TEST_P(GpuData, CopyChannelsMatchesCpuAndLeavesOtherChannels) {
  Rng rng(2);
  const Tensor src = random_tensor({2, 5, 7, 6}, rng);
  Tensor dst = poisoned({2, 5, 7, 9});
  cpu().copy_channels(src, 1, dst, 3, 5);
  Tensor gdst = poison({2, 5, 7, 9});
  gpu().copy_channels(up(src), 1, gdst, 3, 5);
  EXPECT_TRUE(bitwise_equal(down(gdst), dst));  // the untouched channels keep the same poison
}

// ---------------------------------------------------------------- augment_batch

struct AugmentCase {
  const char* what;
  int64_t m, n, h, w, c, first, order_len;
  int pad;
  PadMode pad_mode;
  FlipMode flip;
  int cutout;
  int64_t epoch;
};

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
  for (int64_t i = 0; i < c.order_len; ++i)
    p.order.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.m)));
  p.spec.augment = {seed * 7 + 3, c.pad, c.pad_mode, c.flip, c.cutout};
  p.spec.epoch = c.epoch;
  for (int64_t ch = 0; ch < c.c; ++ch) {
    p.spec.mean[ch] = rng.uniform(0.3f, 0.6f);
    p.spec.std[ch] = rng.uniform(0.2f, 0.3f);
  }
  return p;
}

TEST_P(GpuData, AugmentBatchMatchesCpuBitForBit) {
  const AugmentCase cases[] = {
      {"zero pad, random flip, C3", 23, 9, 9, 7, 3, 5, 20, 3, PadMode::zero, FlipMode::random, 0, 2},
      {"reflect pad, alternating flip, cutout, C1", 17, 11, 8, 11, 1, 0, 11, 2, PadMode::reflect, FlipMode::alternating,
       4, 3},
      {"cutout only, no flip, C3", 7, 5, 5, 5, 3, 1, 8, 0, PadMode::zero, FlipMode::none, 3, 1},
      {"zero pad wider than the image, C1", 5, 4, 3, 4, 1, 0, 4, 6, PadMode::zero, FlipMode::random, 5, 7},
      {"everything off, C4", 6, 3, 4, 3, 4, 3, 6, 0, PadMode::zero, FlipMode::none, 0, 0},
      {"CIFAR-sized", 600, 512, 32, 32, 3, 77, 600, 4, PadMode::reflect, FlipMode::alternating, 12, 5},
  };
  for (const AugmentCase& c : cases) {
    SCOPED_TRACE(c.what);
    const AugmentProblem p = make_problem(c, std::hash<std::string>{}(c.what));
    const Shape out_shape{c.n, c.h, c.w, c.c};
    Tensor expected = poisoned(out_shape);
    cpu().augment_batch(p.images, p.order, c.first, expected, p.spec);
    Tensor got = poison(out_shape);
    gpu().augment_batch(up(p.images), up(p.order), c.first, got, p.spec);
    EXPECT_TRUE(bitwise_equal(down(got), expected));
  }
}

TEST_P(GpuData, AugmentBatchIndexOutsideTheDataSetGivesNan) {
  const AugmentCase c{"bad index", 6, 5, 5, 4, 3, 0, 5, 2, PadMode::reflect, FlipMode::random, 2, 1};
  AugmentProblem p = make_problem(c, 21);
  p.order.data<int32_t>()[1] = 6;
  p.order.data<int32_t>()[3] = std::numeric_limits<int32_t>::min();
  Tensor got = poison({5, 5, 4, 3});
  gpu().augment_batch(up(p.images), up(p.order), 0, got, p.spec);
  const Tensor host = down(got);
  Tensor valid_order = p.order.clone();
  valid_order.data<int32_t>()[1] = valid_order.data<int32_t>()[3] = 0;
  Tensor expected = poisoned({5, 5, 4, 3});
  cpu().augment_batch(p.images, valid_order, 0, expected, p.spec);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t k = 0; k < 60; ++k) {
      const float g = host.f32()[i * 60 + k];
      if (i == 1 || i == 3) {
        ASSERT_TRUE(std::isnan(g)) << i << "," << k;
      } else {
        ASSERT_EQ(std::memcmp(&g, &expected.f32()[i * 60 + k], sizeof g), 0) << i << "," << k;
      }
    }
}

// ---------------------------------------------------------------- image_view

TEST_P(GpuData, ImageViewMatchesCpuBitForBit) {
  struct Case {
    Shape shape;
    ImageView view;
  };
  auto view = [](int sy, int sx, bool flip, PadMode mode) {
    ImageView v;
    v.shift_y = sy;
    v.shift_x = sx;
    v.flip = flip;
    v.pad_mode = mode;
    return v;
  };
  const Case cases[] = {
      {{3, 9, 7, 3}, view(0, 0, true, PadMode::reflect)},       {{2, 5, 6, 1}, view(1, -1, false, PadMode::reflect)},
      {{4, 6, 5, 3}, view(-2, 3, true, PadMode::zero)},         {{1, 4, 4, 2}, view(3, -3, false, PadMode::zero)},
      {{2, 7, 9, 4}, view(-6, 8, true, PadMode::reflect)},      {{64, 32, 32, 3}, view(1, 1, true, PadMode::reflect)},
      {{64, 32, 32, 3}, view(-1, -1, false, PadMode::reflect)},
  };
  Rng rng(4);
  for (const Case& c : cases) {
    SCOPED_TRACE(shape_str(c.shape) + fmt::format(" shift {},{} flip {}", c.view.shift_y, c.view.shift_x, c.view.flip));
    const Tensor x = random_tensor(c.shape, rng, -2.0f, 2.0f);
    Tensor expected = poisoned(c.shape);
    cpu().image_view(x, expected, c.view);
    Tensor got = poison(c.shape);
    gpu().image_view(up(x), got, c.view);
    EXPECT_TRUE(bitwise_equal(down(got), expected));
  }
}

// ---------------------------------------------------------------- DeviceDataLoader

std::shared_ptr<ImageDataset> random_data(int64_t n) {
  auto d = std::make_shared<ImageDataset>();
  d->size = n;
  d->height = d->width = 32;
  d->channels = 3;
  Rng rng(5);
  d->pixels.resize(static_cast<size_t>(n * 32 * 32 * 3));
  for (uint8_t& p : d->pixels) p = static_cast<uint8_t>(rng.below(256));
  d->class_names = {"a", "b", "c"};
  for (int64_t i = 0; i < n; ++i) d->labels.push_back(static_cast<int32_t>(i % 3));
  d->source = "random";
  return d;
}

TEST_P(GpuData, DeviceLoaderGivesTheHostLoadersBatches) {
  auto data = random_data(300);
  DataConfig config;
  config.augment.padding_mode = "reflect";
  config.augment.flip_mode = "alternating";
  config.augment.cutout = 8;
  config.workers = 0;
  for (const LoaderOptions& o : {LoaderOptions::train(config, 64, 9), LoaderOptions::test(config, 64)}) {
    DataLoader host(data, o);
    DeviceDataLoader device(data, o, gpu());
    ASSERT_EQ(device.batches_per_epoch(), host.batches_per_epoch());
    EXPECT_EQ(device.fingerprint(), host.fingerprint());
    for (int64_t epoch : {0, 1}) {
      host.start_epoch(epoch, 1);  // resumed at batch 1
      device.start_epoch(epoch, 1);
      Batch a, b;
      while (host.next(a)) {
        ASSERT_TRUE(device.next(b));
        EXPECT_EQ(b.images.device(), gpu().device());
        EXPECT_TRUE(b.labels.is_cpu());
        EXPECT_EQ(a.index, b.index);
        EXPECT_TRUE(bitwise_equal(b.labels, a.labels));
        EXPECT_TRUE(bitwise_equal(down(b.images), a.images)) << "epoch " << epoch << " batch " << a.index;
      }
      EXPECT_FALSE(device.next(b));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuData, ::testing::Values("cuda", "cudnn"), testing::backend_test_name);

}  // namespace
}  // namespace convnet
