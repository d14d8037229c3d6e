// DataLoader: batch shapes, drop_last, coverage, determinism across worker counts and resumes,
// shutdown and error propagation; the synthetic data set and load_data.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <numeric>
#include <set>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "datasets/cifar10.h"
#include "datasets/loader.h"
#include "datasets/synthetic.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

// `n` random 6x5x3 images where label i == i (one class per image), so labels identify examples.
std::shared_ptr<ImageDataset> unique_label_data(int64_t n, uint64_t seed = 1) {
  auto d = std::make_shared<ImageDataset>();
  d->size = n;
  d->height = 6;
  d->width = 5;
  d->channels = 3;
  Rng rng(seed);
  d->pixels.resize(static_cast<size_t>(n * 90));
  for (uint8_t& p : d->pixels) p = static_cast<uint8_t>(rng.below(256));
  for (int64_t i = 0; i < n; ++i) {
    d->labels.push_back(static_cast<int32_t>(i));
    d->class_names.push_back(fmt::format("c{}", i));
  }
  d->source = "test data";
  return d;
}

LoaderOptions train_options(int64_t batch_size, int workers) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = o.augment = o.drop_last = true;
  o.workers = workers;
  o.seed = 42;
  o.augment_config.crop_padding = 2;
  o.augment_config.padding_mode = "reflect";
  o.augment_config.cutout = 2;
  return o;
}

std::vector<Batch> epoch_batches(DataLoader& loader, int64_t epoch, int64_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<int32_t> labels_of(const Batch& b) {
  const int32_t* p = b.labels.data<int32_t>();
  return {p, p + b.labels.numel()};
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.epoch == b.epoch && a.index == b.index && a.images.shape() == b.images.shape() &&
         a.images.to_vector() == b.images.to_vector() && labels_of(a) == labels_of(b);
}

TEST(DataLoaderTest, BatchShapesAndDropLast) {
  auto data = unique_label_data(50);
  DataLoader train(data, train_options(16, 0));
  EXPECT_EQ(train.batches_per_epoch(), 3);
  EXPECT_EQ(train.num_examples(), 50);
  EXPECT_EQ(train.example_shape(), (Shape{6, 5, 3}));
  EXPECT_EQ(train.num_classes(), 50);
  const std::vector<Batch> batches = epoch_batches(train, 0);
  ASSERT_EQ(batches.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(batches[i].images.shape(), (Shape{16, 6, 5, 3}));
    EXPECT_EQ(batches[i].images.dtype(), DType::f32);
    EXPECT_EQ(batches[i].labels.shape(), (Shape{16}));
    EXPECT_EQ(batches[i].labels.dtype(), DType::i32);
    EXPECT_EQ(batches[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(batches[i].epoch, 0);
  }
  LoaderOptions keep;
  keep.batch_size = 16;
  DataLoader test(data, keep);
  EXPECT_EQ(test.batches_per_epoch(), 4);
  const std::vector<Batch> all = epoch_batches(test, 3);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[3].images.shape(), (Shape{2, 6, 5, 3}));
  EXPECT_EQ(all[3].epoch, 3);
}

TEST(DataLoaderTest, TestOrderIsTheDataSetNormalised) {
  auto data = unique_label_data(10);
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  o.mean = {0.1f, 0.2f, 0.3f};
  o.std = {0.5f, 0.25f, 0.2f};
  DataLoader loader(data, o);
  const std::vector<Batch> batches = epoch_batches(loader, 5);
  ASSERT_EQ(batches.size(), 3u);
  int64_t image = 0;
  for (const Batch& b : batches) {
    const std::vector<float> v = b.images.to_vector();
    for (int64_t i = 0; i < b.labels.numel(); ++i, ++image) {
      EXPECT_EQ(b.labels.data<int32_t>()[i], image);
      for (int64_t k = 0; k < 90; ++k) {
        const double raw = data->pixels[static_cast<size_t>(image * 90 + k)];
        const size_t c = static_cast<size_t>(k % 3);
        ASSERT_NEAR(v[static_cast<size_t>(i * 90 + k)], (raw / 255.0 - o.mean[c]) / o.std[c], 1e-5);
      }
    }
  }
}

TEST(DataLoaderTest, EveryExampleExactlyOncePerEpoch) {
  auto data = unique_label_data(64);
  DataLoader loader(data, train_options(8, 2));
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int32_t> seen;
    for (const Batch& b : epoch_batches(loader, epoch)) {
      const std::vector<int32_t> l = labels_of(b);
      seen.insert(seen.end(), l.begin(), l.end());
    }
    std::vector<int32_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int32_t> expected(64);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(sorted, expected) << "epoch " << epoch;
    EXPECT_NE(seen, expected) << "epoch " << epoch << " was not shuffled";
  }
}

TEST(DataLoaderTest, SameBatchesForAnyNumberOfWorkers) {
  auto data = unique_label_data(70);
  DataLoader w0(data, train_options(8, 0)), w1(data, train_options(8, 1)), w3(data, train_options(8, 3));
  for (int64_t epoch : {0, 1}) {
    const std::vector<Batch> a = epoch_batches(w0, epoch), b = epoch_batches(w1, epoch), c = epoch_batches(w3, epoch);
    ASSERT_EQ(a.size(), 8u);
    ASSERT_EQ(b.size(), a.size());
    ASSERT_EQ(c.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(same_batch(a[i], b[i])) << "epoch " << epoch << " batch " << i;
      EXPECT_TRUE(same_batch(a[i], c[i])) << "epoch " << epoch << " batch " << i;
    }
  }
}

TEST(DataLoaderTest, AugmentationChangesImagesButNotLabels) {
  auto data = unique_label_data(32);
  LoaderOptions plain = train_options(8, 0);
  plain.augment = false;
  DataLoader aug(data, train_options(8, 0)), noaug(data, plain);
  const std::vector<Batch> a = epoch_batches(aug, 1), b = epoch_batches(noaug, 1);
  ASSERT_EQ(a.size(), b.size());
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(labels_of(a[i]), labels_of(b[i]));  // same shuffle
    differing += a[i].images.to_vector() != b[i].images.to_vector();
  }
  EXPECT_EQ(differing, static_cast<int>(a.size()));
}

TEST(DataLoaderTest, ResumeMidEpochGivesTheRemainingBatches) {
  auto data = unique_label_data(60);
  DataLoader full(data, train_options(7, 2));
  const std::vector<Batch> all = epoch_batches(full, 4);
  ASSERT_EQ(all.size(), 8u);
  for (int64_t k : {1, 5, 7, 8}) {
    DataLoader resumed(data, train_options(7, k % 2 ? 3 : 0));
    const std::vector<Batch> rest = epoch_batches(resumed, 4, k);
    ASSERT_EQ(rest.size(), all.size() - static_cast<size_t>(k));
    for (size_t i = 0; i < rest.size(); ++i)
      EXPECT_TRUE(same_batch(rest[i], all[static_cast<size_t>(k) + i])) << "resume at " << k << ", batch " << i;
  }
}

TEST(DataLoaderTest, EpochsDifferAndRepeatExactly) {
  auto data = unique_label_data(40);
  DataLoader a(data, train_options(40, 1)), b(data, train_options(40, 0));
  const std::vector<Batch> e0 = epoch_batches(a, 0), e1 = epoch_batches(a, 1);
  EXPECT_NE(labels_of(e0[0]), labels_of(e1[0]));
  EXPECT_TRUE(same_batch(epoch_batches(b, 1)[0], e1[0]));
  EXPECT_TRUE(same_batch(epoch_batches(a, 0)[0], e0[0]));  // going back to an epoch repeats it
  LoaderOptions other = train_options(40, 0);
  other.seed = 43;
  DataLoader c(data, other);
  EXPECT_NE(labels_of(epoch_batches(c, 0)[0]), labels_of(e0[0]));
}

TEST(DataLoaderTest, StoppingEarlyAndRestartingDoesNotHang) {
  auto data = unique_label_data(200);
  for (int workers : {1, 4}) {
    auto loader = std::make_unique<DataLoader>(data, train_options(4, workers));
    loader->start_epoch(0);
    Batch b;
    ASSERT_TRUE(loader->next(b));
    loader->start_epoch(1, 3);  // abandon epoch 0 with batches in flight
    ASSERT_TRUE(loader->next(b));
    EXPECT_EQ(b.epoch, 1);
    EXPECT_EQ(b.index, 3);
    loader.reset();  // destroy mid-epoch with workers blocked on a full queue
  }
  DataLoader unused(data, train_options(4, 2));  // never started
  DataLoader done(data, train_options(4, 2));
  done.start_epoch(0, done.batches_per_epoch());
  Batch b;
  EXPECT_FALSE(done.next(b));
}

TEST(DataLoaderTest, WorkerErrorsReachNextInOrder) {
  auto data = unique_label_data(40);
  for (int workers : {0, 3}) {
    LoaderOptions o;
    o.batch_size = 4;
    o.workers = workers;
    DataLoader loader(data, o);
    data->labels[22] = 99;  // corrupt after validation: image 22 is in batch 5
    loader.start_epoch(0);
    Batch b;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(loader.next(b)) << i;
      EXPECT_EQ(b.index, i);
    }
    try {
      loader.next(b);
      ADD_FAILURE() << "no error with " << workers << " workers";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("test data: image 22: label 99 outside 0-39"), std::string::npos)
          << e.what();
    }
    data->labels[22] = 22;
  }
}

TEST(DataLoaderTest, RejectsImpossibleSettings) {
  auto data = unique_label_data(10);
  EXPECT_THROW(DataLoader(data, train_options(11, 0)), ConfigError);  // drop_last leaves no batch
  EXPECT_THROW(DataLoader(data, train_options(0, 0)), ConfigError);
  EXPECT_THROW(DataLoader(data, train_options(2, -1)), ConfigError);
  LoaderOptions bad_mean = train_options(2, 0);
  bad_mean.mean = {0.5f};
  EXPECT_THROW(DataLoader(data, bad_mean), ConfigError);
}

TEST(DataLoaderTest, OptionsFromConfigAndFingerprint) {
  DataConfig config;
  config.workers = 3;
  config.augment.cutout = 5;
  const LoaderOptions tr = LoaderOptions::train(config, 64, 9);
  EXPECT_TRUE(tr.shuffle && tr.augment && tr.drop_last);
  EXPECT_EQ(tr.workers, 3);
  EXPECT_EQ(tr.seed, 9u);
  EXPECT_EQ(tr.augment_config.cutout, 5);
  const LoaderOptions te = LoaderOptions::test(config, 100);
  EXPECT_FALSE(te.shuffle || te.augment || te.drop_last);
  EXPECT_EQ(te.batch_size, 100);

  auto data = unique_label_data(12);
  LoaderOptions small = tr;
  small.batch_size = 4;
  DataLoader a(data, te), b(unique_label_data(12), small);
  EXPECT_EQ(a.fingerprint(), data->fingerprint());
  EXPECT_EQ(a.fingerprint(), b.fingerprint());  // same bytes, different loaders
  DataLoader c(unique_label_data(12, 2), te);
  EXPECT_NE(a.fingerprint(), c.fingerprint());
}

TEST(Synthetic, DeterministicAndClassBalanced) {
  const ImageDataset a = make_synthetic(103, 12, 10, 5);
  const ImageDataset b = make_synthetic(103, 12, 10, 5);
  const ImageDataset c = make_synthetic(103, 12, 10, 6);
  EXPECT_NO_THROW(a.validate());
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.pixels, c.pixels);
  EXPECT_EQ(a.height, 12);
  EXPECT_EQ(a.channels, 3);
  std::vector<int> counts(10, 0);
  for (int32_t l : a.labels) counts[static_cast<size_t>(l)]++;
  EXPECT_EQ(*std::max_element(counts.begin(), counts.end()), 11);
  EXPECT_EQ(*std::min_element(counts.begin(), counts.end()), 10);
  int in_cyclic_order = 0;  // shuffled, not 0, 1, 2, ...
  for (size_t i = 0; i < a.labels.size(); ++i) in_cyclic_order += a.labels[i] == static_cast<int32_t>(i % 10);
  EXPECT_LT(in_cyclic_order, 40);
  std::set<uint8_t> values(a.pixels.begin(), a.pixels.end());
  EXPECT_GT(values.size(), 150u);
  EXPECT_THROW(make_synthetic(0, 12, 10, 5), ConfigError);
}

// Class patterns must be told apart from spatial structure: a nearest-class-mean classifier on
// the orientation energy (mean squared horizontal vs vertical gradient) already separates classes
// well above chance.
TEST(Synthetic, ClassesHaveDistinctOrientations) {
  const ImageDataset d = make_synthetic(1000, 16, 10, 11);
  auto feature = [&](int64_t i) {
    const uint8_t* p = d.image(i);
    double gx = 0, gy = 0, gd = 0;
    for (int y = 0; y < 15; ++y)
      for (int x = 0; x < 15; ++x) {
        const double v = p[(y * 16 + x) * 3 + 1];
        gx += std::pow(p[(y * 16 + x + 1) * 3 + 1] - v, 2);
        gy += std::pow(p[((y + 1) * 16 + x) * 3 + 1] - v, 2);
        gd += std::pow(p[((y + 1) * 16 + x + 1) * 3 + 1] - v, 2);
      }
    const double s = gx + gy + gd;
    return std::array<double, 3>{gx / s, gy / s, gd / s};
  };
  std::vector<std::array<double, 3>> mean(10, {0, 0, 0});
  std::vector<int> count(10, 0);
  for (int64_t i = 0; i < 500; ++i) {
    const auto f = feature(i);
    const auto l = static_cast<size_t>(d.labels[static_cast<size_t>(i)]);
    for (int k = 0; k < 3; ++k) mean[l][static_cast<size_t>(k)] += f[static_cast<size_t>(k)];
    count[l]++;
  }
  for (size_t l = 0; l < 10; ++l)
    for (double& m : mean[l]) m /= count[l];
  int correct = 0;
  for (int64_t i = 500; i < 1000; ++i) {
    const auto f = feature(i);
    size_t best = 0;
    double best_d = 1e30;
    for (size_t l = 0; l < 10; ++l) {
      double dist = 0;
      for (size_t k = 0; k < 3; ++k) dist += std::pow(f[k] - mean[l][k], 2);
      if (dist < best_d) best_d = dist, best = l;
    }
    correct += static_cast<int32_t>(best) == d.labels[static_cast<size_t>(i)];
  }
  EXPECT_GT(correct, 150) << correct;  // chance is 50 of 500
}

TEST(LoadData, SyntheticFromConfig) {
  DataConfig config;
  config.dataset = "synthetic";
  config.synthetic_train_size = 120;
  config.synthetic_test_size = 30;
  config.synthetic_image_size = 8;
  config.test_limit = 20;
  const DataSplits s = load_data(config, 3);
  EXPECT_EQ(s.train.size, 120);
  EXPECT_EQ(s.test.size, 20);
  EXPECT_EQ(s.train.width, 8);
  EXPECT_EQ(s.train.num_classes(), 10);
  EXPECT_NE(s.train.pixels, load_data(config, 4).train.pixels);
  EXPECT_EQ(s.train.pixels, load_data(config, 3).train.pixels);
  config.dataset = "mnist";
  EXPECT_THROW(load_data(config, 3), ConfigError);
}

}  // namespace
}  // namespace convnet
