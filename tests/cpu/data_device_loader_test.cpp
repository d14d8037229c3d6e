// DeviceDataLoader over the cpu backend against DataLoader: the same batches bit for bit (images,
// labels, epoch, index) for train and test options, several epochs, every flip mode, zero and
// reflect padding, cutout and mid-epoch resumes; the shared epoch order; the batch lifetime the
// trainer relies on; and the alternating flip checked on pixels against the unflipped images.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/cpu/cpu_backend.h"
#include "datasets/augment.h"
#include "datasets/device_loader.h"
#include "datasets/loader.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

// `n` random h x w x c images where label i == i (one class per image), so labels identify examples.
std::shared_ptr<ImageDataset> unique_label_data(int64_t n, int h = 6, int w = 5, int c = 3, uint64_t seed = 1) {
  auto d = std::make_shared<ImageDataset>();
  d->size = n;
  d->height = h;
  d->width = w;
  d->channels = c;
  Rng rng(seed);
  d->pixels.resize(static_cast<size_t>(n * h * w * c));
  for (uint8_t& p : d->pixels) p = static_cast<uint8_t>(rng.below(256));
  for (int64_t i = 0; i < n; ++i) {
    d->labels.push_back(static_cast<int32_t>(i));
    d->class_names.push_back(fmt::format("c{}", i));
  }
  d->source = "test data";
  return d;
}

Backend& cpu() {
  static const std::unique_ptr<Backend> backend = make_cpu_backend();
  return *backend;
}

LoaderOptions train_options(int64_t batch_size, const std::string& pad_mode, const std::string& flip_mode, bool flip,
                            int cutout) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = o.augment = o.drop_last = true;
  o.workers = 0;
  o.seed = 42;
  o.augment_config.crop_padding = 2;
  o.augment_config.padding_mode = pad_mode;
  o.augment_config.flip = flip;
  o.augment_config.flip_mode = flip_mode;
  o.augment_config.cutout = cutout;
  o.mean = {0.3f, 0.4f, 0.5f};
  o.std = {0.2f, 0.25f, 0.3f};
  return o;
}

// A batch with its images copied to the host (the loader reuses its device buffers).
Batch host_copy(Backend& backend, const Batch& b) {
  Batch h = b;
  h.images = Tensor(b.images.shape());
  backend.copy(h.images, b.images);
  h.labels = b.labels.clone();
  return h;
}

std::vector<Batch> epoch_batches(BatchSource& loader, Backend& backend, int64_t epoch, int64_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(host_copy(backend, b));
  return out;
}

std::vector<int32_t> labels_of(const Batch& b) {
  const int32_t* p = b.labels.data<int32_t>();
  return {p, p + b.labels.numel()};
}

// Same epoch, index, labels, and image bits.
::testing::AssertionResult same_batch(const Batch& a, const Batch& b) {
  if (a.epoch != b.epoch || a.index != b.index)
    return ::testing::AssertionFailure() << "epoch/index " << a.epoch << "/" << a.index << " vs " << b.epoch << "/"
                                         << b.index;
  if (a.images.shape() != b.images.shape())
    return ::testing::AssertionFailure() << shape_str(a.images.shape()) << " vs " << shape_str(b.images.shape());
  if (labels_of(a) != labels_of(b)) return ::testing::AssertionFailure() << "labels differ";
  if (std::memcmp(a.images.raw(), b.images.raw(), a.images.bytes()) != 0) {
    int64_t i = 0;
    while (std::memcmp(a.images.f32() + i, b.images.f32() + i, sizeof(float)) == 0) ++i;
    return ::testing::AssertionFailure() << "image element " << i << ": " << a.images.f32()[i] << " vs "
                                         << b.images.f32()[i];
  }
  return ::testing::AssertionSuccess();
}

void expect_same_epochs(const std::shared_ptr<ImageDataset>& data, const LoaderOptions& options,
                        const std::string& what) {
  DataLoader host(data, options);
  DeviceDataLoader device(data, options, cpu());
  ASSERT_EQ(device.batches_per_epoch(), host.batches_per_epoch()) << what;
  EXPECT_EQ(device.num_examples(), host.num_examples());
  EXPECT_EQ(device.example_shape(), host.example_shape());
  EXPECT_EQ(device.num_classes(), host.num_classes());
  EXPECT_EQ(device.class_names(), host.class_names());
  EXPECT_EQ(device.fingerprint(), host.fingerprint());
  for (int64_t epoch : {0, 1, 2, 5}) {
    const std::vector<Batch> a = epoch_batches(host, cpu(), epoch), b = epoch_batches(device, cpu(), epoch);
    EXPECT_EQ(device.epoch_order(), host.epoch_order()) << what << " epoch " << epoch;
    ASSERT_EQ(a.size(), b.size()) << what;
    ASSERT_EQ(static_cast<int64_t>(a.size()), host.batches_per_epoch()) << what;
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(same_batch(b[i], a[i])) << what << " epoch " << epoch << " batch " << i;
  }
}

TEST(DeviceDataLoaderTest, TrainBatchesEqualDataLoaderForEveryAugmentation) {
  auto data = unique_label_data(50);
  for (const char* pad : {"zero", "reflect"})
    for (const char* flip_mode : {"random", "alternating"})
      for (bool flip : {true, false})
        for (int cutout : {0, 3}) {
          const std::string what = fmt::format("pad {} flip {} ({}) cutout {}", pad, flip_mode, flip, cutout);
          expect_same_epochs(data, train_options(16, pad, flip_mode, flip, cutout), what);
        }
}

TEST(DeviceDataLoaderTest, OneChannelImagesAndFullBatches) {
  auto data = unique_label_data(36, 7, 9, 1, 3);
  LoaderOptions o = train_options(12, "reflect", "alternating", true, 4);
  o.mean = {0.45f};
  o.std = {0.22f};
  expect_same_epochs(data, o, "C1, exact batches");
}

TEST(DeviceDataLoaderTest, TestBatchesKeepOrderAndTheLastPartialBatch) {
  auto data = unique_label_data(50);
  DataConfig config;
  config.mean = {0.1f, 0.2f, 0.3f};
  config.std = {0.5f, 0.25f, 0.2f};
  config.augment.cutout = 4;  // ignored: test loaders do not augment
  const LoaderOptions o = LoaderOptions::test(config, 16);
  DeviceDataLoader device(data, o, cpu());
  EXPECT_EQ(device.batches_per_epoch(), 4);
  const std::vector<Batch> b = epoch_batches(device, cpu(), 0);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[3].images.shape(), (Shape{2, 6, 5, 3}));
  int64_t image = 0;
  for (const Batch& batch : b)  // independent of both loaders: the normalisation formula
    for (int64_t i = 0; i < batch.labels.numel(); ++i, ++image) {
      ASSERT_EQ(batch.labels.data<int32_t>()[i], image);
      for (int64_t k = 0; k < 90; ++k) {
        const double raw = data->pixels[static_cast<size_t>(image * 90 + k)];
        const size_t c = static_cast<size_t>(k % 3);
        ASSERT_NEAR(batch.images.f32()[i * 90 + k], (raw / 255.0 - config.mean[c]) / config.std[c], 1e-5);
      }
    }
  expect_same_epochs(data, o, "test options");
}

TEST(DeviceDataLoaderTest, ResumeMidEpochGivesTheRemainingBatches) {
  auto data = unique_label_data(60);
  const LoaderOptions o = train_options(7, "reflect", "alternating", true, 2);
  DataLoader host(data, o);
  const std::vector<Batch> all = epoch_batches(host, cpu(), 3);
  ASSERT_EQ(all.size(), 8u);
  for (int64_t k : {1, 4, 7, 8}) {
    DeviceDataLoader resumed(data, o, cpu());
    const std::vector<Batch> rest = epoch_batches(resumed, cpu(), 3, k);
    ASSERT_EQ(rest.size(), all.size() - static_cast<size_t>(k));
    for (size_t i = 0; i < rest.size(); ++i)
      EXPECT_TRUE(same_batch(rest[i], all[static_cast<size_t>(k) + i])) << "resume at " << k << ", batch " << i;
  }
}

TEST(DeviceDataLoaderTest, HeldBatchSurvivesTheNextCall) {
  // The trainer holds batch k while it asks for k + 1: two buffers in turn keep k intact.
  auto data = unique_label_data(48);
  const LoaderOptions o = train_options(8, "zero", "random", true, 0);
  DataLoader host(data, o);
  const std::vector<Batch> expected = epoch_batches(host, cpu(), 1);
  DeviceDataLoader device(data, o, cpu());
  device.start_epoch(1);
  Batch batch, next;
  ASSERT_TRUE(device.next(batch));
  for (size_t k = 0; k + 1 < expected.size(); ++k) {
    ASSERT_TRUE(device.next(next));
    EXPECT_TRUE(same_batch(host_copy(cpu(), batch), expected[k])) << "batch " << k << " after fetching k + 1";
    EXPECT_TRUE(same_batch(host_copy(cpu(), next), expected[k + 1]));
    std::swap(batch, next);
  }
  EXPECT_FALSE(device.next(next));
}

TEST(DeviceDataLoaderTest, AlternatingFlipMirrorsEachImageEveryOtherEpoch) {
  // No crop or cutout: each training image is either the plain image or its mirror, judged from
  // the pixels against normalized_images (random pixels are never mirror-symmetric).
  const int h = 4, w = 5, c = 3;
  const int64_t n = 400;
  auto data = unique_label_data(n, h, w, c, 9);
  LoaderOptions o = train_options(50, "zero", "alternating", true, 0);
  o.augment_config.crop_padding = 0;
  const Tensor plain = normalized_images(*data, n, o.mean, o.std);
  DeviceDataLoader loader(data, o, cpu());
  const int64_t image = h * w * c;
  std::vector<int> previous(static_cast<size_t>(n), -1);
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    int flipped = 0;
    for (const Batch& b : epoch_batches(loader, cpu(), epoch))
      for (int64_t i = 0; i < b.labels.numel(); ++i) {
        const int64_t e = b.labels.data<int32_t>()[i];
        const float* got = b.images.f32() + i * image;
        const float* src = plain.f32() + e * image;
        bool same = true, mirrored = true;
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch) {
              const float v = got[(y * w + x) * c + ch];
              same &= v == src[(y * w + x) * c + ch];
              mirrored &= v == src[(y * w + (w - 1 - x)) * c + ch];
            }
        ASSERT_NE(same, mirrored) << "epoch " << epoch << " image " << e;
        flipped += mirrored;
        int& prev = previous[static_cast<size_t>(e)];
        if (prev >= 0) {
          ASSERT_NE(prev, static_cast<int>(mirrored)) << "epoch " << epoch << " image " << e;
        }
        prev = mirrored;
      }
    EXPECT_GT(flipped, n / 2 - 40) << "epoch " << epoch;  // 4 standard deviations
    EXPECT_LT(flipped, n / 2 + 40) << "epoch " << epoch;
  }
}

TEST(DeviceDataLoaderTest, EpochPermutationIsShared) {
  const std::vector<int64_t> id = epoch_permutation(10, false, 42, 3);
  std::vector<int64_t> expected(10);
  std::iota(expected.begin(), expected.end(), int64_t{0});
  EXPECT_EQ(id, expected);
  const std::vector<int64_t> p = epoch_permutation(100, true, 42, 3);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> all(100);
  std::iota(all.begin(), all.end(), int64_t{0});
  EXPECT_EQ(sorted, all);
  EXPECT_NE(p, all);
  EXPECT_EQ(p, epoch_permutation(100, true, 42, 3));
  EXPECT_NE(p, epoch_permutation(100, true, 42, 4));
  EXPECT_NE(p, epoch_permutation(100, true, 43, 3));
}

TEST(DeviceDataLoaderTest, RejectsImpossibleSettings) {
  auto data = unique_label_data(20);
  LoaderOptions o = train_options(8, "zero", "random", true, 0);
  {
    DeviceDataLoader loader(data, o, cpu());
    Batch b;
    EXPECT_THROW(loader.next(b), Error);  // start_epoch() not called
    EXPECT_THROW(loader.start_epoch(0, 3), Error);
    EXPECT_NO_THROW(loader.start_epoch(0, 2));
    EXPECT_FALSE(loader.next(b));
  }
  o.batch_size = 0;
  EXPECT_THROW(DeviceDataLoader(data, o, cpu()), ConfigError);
  o.batch_size = 21;
  EXPECT_THROW(DeviceDataLoader(data, o, cpu()), ConfigError);  // no full batch
  o.batch_size = 8;
  o.augment_config.flip_mode = "sometimes";
  EXPECT_THROW(DeviceDataLoader(data, o, cpu()), ConfigError);
  o.augment_config.flip_mode = "random";
  o.mean = {0.5f};
  EXPECT_THROW(DeviceDataLoader(data, o, cpu()), ConfigError);
  EXPECT_THROW(DeviceDataLoader(nullptr, train_options(8, "zero", "random", true, 0), cpu()), Error);
}

}  // namespace
}  // namespace convnet
