// Data-parallel sharding of the loaders (LoaderOptions::shard_rank / shard_count): the ranks'
// shards of a batch, concatenated in rank order, are exactly the unsharded batch (pixels, labels,
// augmentation), for DataLoader and DeviceDataLoader, including uneven and empty shards of a short
// last test batch; a training batch that does not split evenly is a ConfigError.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "datasets/device_loader.h"
#include "datasets/loader.h"
#include "datasets/synthetic.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

std::shared_ptr<const ImageDataset> data() {
  static const auto d = std::make_shared<const ImageDataset>(make_synthetic(50, 6, 10, 3));
  return d;
}

LoaderOptions train_options(int64_t batch) {
  DataConfig config;
  config.augment.crop_padding = 1;
  config.augment.flip = true;
  return LoaderOptions::train(config, batch, 11);
}

template <typename Loader, typename... Extra>
std::vector<Batch> epoch_batches(LoaderOptions options, int rank, int ranks, int64_t epoch, Extra&... extra) {
  options.shard_rank = rank;
  options.shard_count = ranks;
  Loader loader(data(), options, extra...);
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  for (Batch b; loader.next(b);) {
    Batch copy;
    copy.images = b.images.clone();  // DeviceDataLoader reuses its two buffers
    copy.labels = b.labels.clone();
    copy.index = b.index;
    out.push_back(copy);
  }
  return out;
}

// Shards of every batch on `ranks` ranks, concatenated, equal the one-rank batches.
template <typename Loader, typename... Extra>
void expect_shards_tile_batches(const LoaderOptions& options, int ranks, Extra&... extra) {
  const std::vector<Batch> whole = epoch_batches<Loader>(options, 0, 1, 1, extra...);
  std::vector<std::vector<Batch>> shards;
  for (int r = 0; r < ranks; ++r) shards.push_back(epoch_batches<Loader>(options, r, ranks, 1, extra...));
  for (size_t b = 0; b < whole.size(); ++b) {
    const int64_t image_floats = whole[b].images.numel() / whole[b].labels.numel();
    int64_t row = 0;
    for (int r = 0; r < ranks; ++r) {
      ASSERT_EQ(shards[static_cast<size_t>(r)].size(), whole.size());
      const Batch& s = shards[static_cast<size_t>(r)][b];
      EXPECT_EQ(s.index, whole[b].index);
      const int64_t n = s.labels.numel();
      EXPECT_EQ(0, std::memcmp(s.labels.raw(), whole[b].labels.data<int32_t>() + row, n * sizeof(int32_t)));
      EXPECT_EQ(0, std::memcmp(s.images.raw(), whole[b].images.f32() + row * image_floats,
                               static_cast<size_t>(n * image_floats) * sizeof(float)))
          << "batch " << b << " rank " << r;
      row += n;
    }
    EXPECT_EQ(row, whole[b].labels.numel()) << "batch " << b;
  }
}

TEST(DataShard, TrainingShardsTileEveryBatch) {
  expect_shards_tile_batches<DataLoader>(train_options(12), 2);
  expect_shards_tile_batches<DataLoader>(train_options(12), 3);
}

TEST(DataShard, TestShardsTileEveryBatchIncludingAShortLastOne) {
  // 50 images in batches of 16: the last batch has 2 rows, so of 4 ranks two get none.
  DataConfig config;
  const LoaderOptions options = LoaderOptions::test(config, 16);
  expect_shards_tile_batches<DataLoader>(options, 4);
  LoaderOptions last = options;
  last.shard_count = 4;
  EXPECT_EQ(batch_shard(3, 50, last).size, 0);
  last.shard_rank = 3;
  EXPECT_EQ(batch_shard(3, 50, last).size, 1);
  EXPECT_EQ(batch_shard(3, 50, last).begin, 49);
}

TEST(DataShard, DeviceLoaderShardsTileEveryBatch) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  Backend& backend = *cpu;
  expect_shards_tile_batches<DeviceDataLoader>(train_options(12), 3, backend);
  DataConfig config;
  expect_shards_tile_batches<DeviceDataLoader>(LoaderOptions::test(config, 16), 4, backend);
}

TEST(DataShard, ATrainingBatchThatDoesNotSplitEvenlyIsAConfigError) {
  LoaderOptions options = train_options(16);
  options.shard_count = 3;
  EXPECT_NE(testing::error_of<ConfigError>([&] {
              DataLoader loader(data(), options);
            }).find("train.batch_size 16 does not split evenly over 3 ranks"),
            std::string::npos);
}

}  // namespace
}  // namespace convnet
