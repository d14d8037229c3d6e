// DataLoader: the BatchSource the trainer pulls from. It shuffles an ImageDataset per epoch,
// augments and normalises each image, and prepares batches on background threads.
//
// Determinism: the epoch order is epoch_permutation() (shared with DeviceDataLoader) and each
// image's augmentation depends only on (seed, epoch, example index) (ImageTransform::params), so
// every batch is a pure function of (data, options, epoch, batch index): the same for any number
// of workers, and a run resumed at batch k sees exactly batches k.. of the uninterrupted epoch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/base/batch.h"
#include "core/config/config.h"
#include "datasets/augment.h"
#include "datasets/image_dataset.h"

namespace convnet {

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = false;
  bool augment = false;
  bool drop_last = false;  // drop the last partial batch (train) or keep it (test)
  int workers = 0;         // background threads; 0 prepares each batch inside next()
  int prefetch = 3;        // batches prepared ahead of the consumer (at least `workers`)
  uint64_t seed = 0;
  // Data-parallel training (issue 13): each of shard_count ranks takes rows
  // [n * r / count, n * (r + 1) / count) of every global batch of n rows (batch_shard()), so the
  // ranks together see exactly the batches one process would. A training batch_size must be a
  // multiple of shard_count (equal shards: the mean of the ranks' mean losses is the global mean).
  int shard_rank = 0;
  int shard_count = 1;
  AugmentConfig augment_config;
  std::vector<float> mean = {0.4914f, 0.4822f, 0.4465f};
  std::vector<float> std = {0.2470f, 0.2435f, 0.2616f};

  // Training: shuffled, augmented as config.augment says, drop_last, config.workers threads.
  static LoaderOptions train(const DataConfig& config, int64_t batch_size, uint64_t seed);
  // Evaluation: dataset order, no augmentation, last partial batch kept, config.workers threads.
  static LoaderOptions test(const DataConfig& config, int64_t batch_size);
};

// The dataset indices of `epoch` in batch order: 0..size-1, or with `shuffle` a Fisher-Yates
// permutation drawn from Rng(hash64(seed, epoch)). Every loader uses this one order.
std::vector<int64_t> epoch_permutation(int64_t size, bool shuffle, uint64_t seed, int64_t epoch);

// Batches per epoch of `size` examples under `options` (drop_last drops a partial last batch).
// Throws ConfigError for a non-positive batch size, when there would be no batch at all (`source`
// names the data in the message), or when a drop_last (training) batch does not split evenly
// over shard_count ranks.
int64_t count_batches(int64_t size, const LoaderOptions& options, const std::string& source);

// Rows [begin, begin + size) of the epoch order that batch `index` holds on this rank
// (LoaderOptions::shard_rank of shard_count); `size` may be 0 for a short last test batch.
struct BatchRows {
  int64_t begin = 0, size = 0;
};
BatchRows batch_shard(int64_t index, int64_t dataset_size, const LoaderOptions& options);

// The transform `options` ask for on images of `data` (seeded by options.seed); ConfigError as
// ImageTransform. Validates `data` first (convnet::Error when it is null or inconsistent).
ImageTransform loader_transform(const std::shared_ptr<const ImageDataset>& data, const LoaderOptions& options);

class DataLoader final : public BatchSource {
 public:
  // Throws ConfigError for a non-positive batch size, negative workers, bad normalisation or
  // augmentation settings (see ImageTransform), or when there would be no batch at all; Error when
  // `dataset` is inconsistent. The loader keeps `dataset` alive.
  DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options);
  ~DataLoader() override;  // stops and joins the workers, even mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_examples() const override { return data_->size; }
  int64_t batches_per_epoch() const override { return batches_; }
  Shape example_shape() const override { return {data_->height, data_->width, data_->channels}; }
  int num_classes() const override { return data_->num_classes(); }
  std::vector<std::string> class_names() const override { return data_->class_names; }
  // Cancels any batches in flight and starts `epoch` at `first_batch` (0 <= first_batch <=
  // batches_per_epoch(); equal to it means the epoch is already finished).
  void start_epoch(int64_t epoch, int64_t first_batch = 0) override;
  // Next batch of the current epoch (images f32 [n, H, W, C], labels i32 [n]); false at its end.
  // Rethrows an exception raised while preparing a batch. start_epoch() must have been called.
  bool next(Batch& batch) override;
  // ImageDataset::fingerprint(), computed once on first use.
  std::string fingerprint() const override;

  const ImageDataset& dataset() const { return *data_; }
  const LoaderOptions& options() const { return options_; }
  // The dataset indices of the current epoch in order (its permutation when shuffling).
  const std::vector<int64_t>& epoch_order() const { return order_; }
  // Builds batch `index` of the current epoch directly on the calling thread.
  void make_batch(int64_t index, Batch& batch) const;

 private:
  void stop_workers();
  void worker_loop();

  std::shared_ptr<const ImageDataset> data_;
  LoaderOptions options_;
  ImageTransform transform_;
  int64_t batches_ = 0;
  bool started_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;

  // Worker state, guarded by mutex_: batches [next_, claim_) are being prepared or are in ready_.
  std::mutex mutex_;
  std::condition_variable ready_cv_;  // a batch was finished (or failed)
  std::condition_variable space_cv_;  // the consumer took a batch (or stop)
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;  // the failure of batch error_index_, the lowest that failed
  int64_t error_index_ = 0;
  int64_t next_ = 0;   // next batch next() returns
  int64_t claim_ = 0;  // next batch a worker will take
  bool stop_ = false;
  std::vector<std::thread> threads_;

  mutable std::once_flag fingerprint_once_;
  mutable std::string fingerprint_;
};

}  // namespace convnet
