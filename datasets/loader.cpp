#include "datasets/loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "core/base/error.h"
#include "core/base/rng.h"

namespace convnet {

LoaderOptions LoaderOptions::train(const DataConfig& config, int64_t batch_size, uint64_t seed) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = true;
  o.augment = true;
  o.drop_last = true;
  o.workers = config.workers;
  o.seed = seed;
  o.augment_config = config.augment;
  o.mean = config.mean;
  o.std = config.std;
  return o;
}

LoaderOptions LoaderOptions::test(const DataConfig& config, int64_t batch_size) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.workers = config.workers;
  o.augment_config = config.augment;
  o.mean = config.mean;
  o.std = config.std;
  return o;
}

std::vector<int64_t> epoch_permutation(int64_t size, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle) {
    Rng rng(hash64(seed, static_cast<uint64_t>(epoch)));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  }
  return order;
}

int64_t count_batches(int64_t size, const LoaderOptions& options, const std::string& source) {
  const int64_t bs = options.batch_size;
  if (bs <= 0) throw ConfigError(fmt::format("train.batch_size: expected a positive batch size, got {}", bs));
  if (options.shard_count < 1 || options.shard_rank < 0 || options.shard_rank >= options.shard_count)
    throw Error(fmt::format("data shard {} of {}: no such rank", options.shard_rank, options.shard_count));
  if (options.drop_last && bs % options.shard_count != 0)
    throw ConfigError(
        fmt::format("train.batch_size {} does not split evenly over {} ranks (it is the global batch: "
                    "use a multiple of {})",
                    bs, options.shard_count, options.shard_count));
  const int64_t batches = options.drop_last ? size / bs : (size + bs - 1) / bs;
  if (batches == 0)
    throw ConfigError(fmt::format("{}: {} images make no {}batch of {} (train.batch_size)", source, size,
                                  options.drop_last ? "full " : "", bs));
  return batches;
}

BatchRows batch_shard(int64_t index, int64_t dataset_size, const LoaderOptions& options) {
  const int64_t begin = index * options.batch_size;
  const int64_t n = std::min(options.batch_size, dataset_size - begin);
  const int64_t r = options.shard_rank, count = options.shard_count;
  const int64_t first = n * r / count, end = n * (r + 1) / count;
  return {begin + first, end - first};
}

ImageTransform loader_transform(const std::shared_ptr<const ImageDataset>& data, const LoaderOptions& options) {
  CONVNET_CHECK(data != nullptr, "a data loader needs a data set");
  data->validate();
  return ImageTransform(data->height, data->width, data->channels, options.mean, options.std, options.augment_config,
                        options.augment, options.seed);
}

DataLoader::DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options)
    : data_(std::move(dataset)), options_(std::move(options)), transform_(loader_transform(data_, options_)) {
  batches_ = count_batches(data_->size, options_, data_->source);
  if (options_.workers < 0)
    throw ConfigError(fmt::format("data.workers: expected 0 or more threads, got {}", options_.workers));
}

DataLoader::~DataLoader() {
  stop_workers();
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  ready_.clear();
  error_ = nullptr;
  stop_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  CONVNET_CHECK(first_batch >= 0 && first_batch <= batches_, "first batch {} outside [0, {}]", first_batch, batches_);
  stop_workers();
  epoch_ = epoch;
  order_ = epoch_permutation(data_->size, options_.shuffle, options_.seed, epoch);
  next_ = claim_ = first_batch;
  started_ = true;
  for (int w = 0; w < options_.workers; ++w) threads_.emplace_back([this] { worker_loop(); });
}

void DataLoader::worker_loop() {
  const int64_t depth = std::max<int64_t>(options_.prefetch, options_.workers);
  for (;;) {
    int64_t index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_cv_.wait(lock, [&] { return stop_ || claim_ >= batches_ || claim_ < next_ + depth; });
      if (stop_ || claim_ >= batches_) return;
      index = claim_++;
    }
    Batch batch;
    try {
      make_batch(index, batch);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_ || index < error_index_) {
          error_ = std::current_exception();
          error_index_ = index;
        }
      }
      ready_cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(index, std::move(batch));
    }
    ready_cv_.notify_all();
  }
}

void DataLoader::make_batch(int64_t index, Batch& batch) const {
  CONVNET_CHECK(started_, "DataLoader: start_epoch() was not called");
  CONVNET_CHECK(index >= 0 && index < batches_, "batch {} outside [0, {})", index, batches_);
  const auto [begin, n] = batch_shard(index, data_->size, options_);
  const int64_t image_floats = data_->image_bytes();
  batch.images = Tensor({n, data_->height, data_->width, data_->channels});
  batch.labels = Tensor({n}, DType::i32);
  batch.epoch = epoch_;
  batch.index = index;
  float* images = batch.images.f32();
  int32_t* labels = batch.labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t example = order_[static_cast<size_t>(begin + i)];
    const AugmentParams p = transform_.params(epoch_, example);
    transform_.apply(data_->image(example), p, images + i * image_floats);
    const int32_t label = data_->labels[static_cast<size_t>(example)];
    if (label < 0 || label >= data_->num_classes())  // the data set was changed after validation
      throw Error(
          fmt::format("{}: image {}: label {} outside 0-{}", data_->source, example, label, data_->num_classes() - 1));
    labels[i] = label;
  }
}

bool DataLoader::next(Batch& batch) {
  CONVNET_CHECK(started_, "DataLoader: start_epoch() was not called");
  if (options_.workers == 0) {
    if (next_ >= batches_) return false;
    make_batch(next_++, batch);
    return true;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_ >= batches_) return false;
  // A failed batch is reported when the consumer reaches it, so the batches before it still come
  // out in order. Every batch before the failed one was claimed by a worker that finishes it.
  ready_cv_.wait(lock, [&] { return ready_.count(next_) != 0 || (error_ && error_index_ == next_); });
  if (ready_.count(next_) == 0) std::rethrow_exception(error_);
  auto it = ready_.find(next_);
  batch = std::move(it->second);
  ready_.erase(it);
  ++next_;
  lock.unlock();
  space_cv_.notify_all();
  return true;
}

std::string DataLoader::fingerprint() const {
  std::call_once(fingerprint_once_, [this] { fingerprint_ = data_->fingerprint(); });
  return fingerprint_;
}

}  // namespace convnet
