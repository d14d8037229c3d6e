#include "datasets/device_loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "core/base/error.h"

namespace convnet {

DeviceDataLoader::DeviceDataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options, Backend& backend)
    : data_(std::move(dataset)),
      options_(std::move(options)),
      backend_(backend),
      transform_(loader_transform(data_, options_)) {
  batches_ = count_batches(data_->size, options_, data_->source);
  CONVNET_CHECK(data_->size <= std::numeric_limits<int32_t>::max(),
                "{}: {} images are more than a device loader indexes (2^31 - 1)", data_->source, data_->size);
  spec_ = transform_.batch_spec(0);  // throws early for more than kMaxImageChannels channels

  const Shape shape{data_->size, data_->height, data_->width, data_->channels};
  Tensor host(shape, DType::u8);
  std::memcpy(host.raw(), data_->pixels.data(), host.bytes());
  if (backend_.device().kind == DeviceKind::cpu) {
    images_ = std::move(host);
  } else {
    images_ = backend_.empty(shape, DType::u8);
    backend_.copy(images_, host);  // staged: `host` may be freed on return
  }
  order_device_ = backend_.empty({data_->size}, DType::i32);
}

void DeviceDataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  CONVNET_CHECK(first_batch >= 0 && first_batch <= batches_, "first batch {} outside [0, {}]", first_batch, batches_);
  epoch_ = epoch;
  order_ = epoch_permutation(data_->size, options_.shuffle, options_.seed, epoch);
  Tensor host({data_->size}, DType::i32);
  int32_t* indices = host.data<int32_t>();
  for (size_t i = 0; i < order_.size(); ++i) indices[i] = static_cast<int32_t>(order_[i]);
  // Queued after the augment_batch calls of the batches handed out so far, which read the old
  // order; the copy stages `host`, so it may be freed on return.
  backend_.copy(order_device_, host);
  spec_ = transform_.batch_spec(epoch);
  next_ = first_batch;
  started_ = true;
}

bool DeviceDataLoader::next(Batch& batch) {
  CONVNET_CHECK(started_, "DeviceDataLoader: start_epoch() was not called");
  if (next_ >= batches_) return false;
  const int64_t index = next_++;
  const auto [begin, n] = batch_shard(index, data_->size, options_);

  Tensor& out = outputs_[slot_];
  slot_ ^= 1;
  if (!out.defined() || out.dim(0) != n)  // the last partial batch of a test epoch
    out = backend_.empty({n, data_->height, data_->width, data_->channels});
  if (n > 0) backend_.augment_batch(images_, order_device_, begin, out, spec_);  // a shard can be empty

  Tensor labels({n}, DType::i32);
  int32_t* dst = labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t example = order_[static_cast<size_t>(begin + i)];
    const int32_t label = data_->labels[static_cast<size_t>(example)];
    if (label < 0 || label >= data_->num_classes())  // the data set was changed after validation
      throw Error(
          fmt::format("{}: image {}: label {} outside 0-{}", data_->source, example, label, data_->num_classes() - 1));
    dst[i] = label;
  }
  batch.images = out;
  batch.labels = std::move(labels);
  batch.epoch = epoch_;
  batch.index = index;
  return true;
}

std::string DeviceDataLoader::fingerprint() const {
  std::call_once(fingerprint_once_, [this] { fingerprint_ = data_->fingerprint(); });
  return fingerprint_;
}

}  // namespace convnet
