// DeviceDataLoader: the BatchSource for a first layer on a GPU. The whole uint8 data set is
// uploaded once to the backend's device; each epoch uploads its index order (i32) once; each
// batch is one Backend::augment_batch call into a device tensor, so no image crosses the bus per
// step and no CPU thread augments. Labels are gathered on the host (Batch::labels stays a host
// tensor, as the trainer expects).
//
// Same contract as DataLoader for the same data and LoaderOptions: the epoch order is
// epoch_permutation(), each image's transform is ImageTransform::params(epoch, example), and the
// pixels are exactly those DataLoader gives (Backend::augment_batch's contract), so batches are
// bit-identical; batches_per_epoch, drop_last, shuffle, resuming at first_batch and the
// fingerprint behave the same. LoaderOptions::workers and prefetch are ignored.
//
// Batch lifetime: batch.images is one of two device tensors used in turn, so the images of a
// batch stay valid until next() has been called twice more. The trainer holds batch k while it
// asks for k + 1 and is done with k (its forward and backward are queued) before it asks for
// k + 2. Two buffers suffice because all device work is ordered on the backend's stream: the
// augment_batch call that overwrites batch k's buffer is queued after every op that reads batch
// k, so it runs after them. Keep a copy (Backend::copy) to hold a batch longer.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/batch.h"
#include "datasets/augment.h"
#include "datasets/image_dataset.h"
#include "datasets/loader.h"

namespace convnet {

class DeviceDataLoader final : public BatchSource {
 public:
  // Uploads `dataset` to `backend`'s device (kept there until destruction; a cpu backend keeps one
  // host copy). Throws ConfigError like DataLoader for a bad batch size, normalisation or
  // augmentation settings or no batch at all; convnet::Error when `dataset` is inconsistent, has
  // more than kMaxImageChannels channels or more than 2^31 - 1 images, or the device is out of
  // memory. The loader keeps `dataset` alive; `backend` must outlive it.
  DeviceDataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options, Backend& backend);
  DeviceDataLoader(const DeviceDataLoader&) = delete;
  DeviceDataLoader& operator=(const DeviceDataLoader&) = delete;

  int64_t num_examples() const override { return data_->size; }
  int64_t batches_per_epoch() const override { return batches_; }
  Shape example_shape() const override { return {data_->height, data_->width, data_->channels}; }
  int num_classes() const override { return data_->num_classes(); }
  std::vector<std::string> class_names() const override { return data_->class_names; }
  // Starts `epoch` at `first_batch` (0 <= first_batch <= batches_per_epoch()) and uploads its
  // order; queued on the backend's stream after the batches already handed out.
  void start_epoch(int64_t epoch, int64_t first_batch = 0) override;
  // Next batch of the current epoch: images f32 [n, H, W, C] on the backend's device (see "Batch
  // lifetime" above), labels i32 [n] on the host; false at its end. start_epoch() must have been
  // called. Throws convnet::Error for a label outside the class range.
  bool next(Batch& batch) override;
  // ImageDataset::fingerprint(), computed once on first use (the same string as DataLoader's).
  std::string fingerprint() const override;

  Backend& backend() const { return backend_; }
  const LoaderOptions& options() const { return options_; }
  // The dataset indices of the current epoch in order (epoch_permutation()).
  const std::vector<int64_t>& epoch_order() const { return order_; }

 private:
  std::shared_ptr<const ImageDataset> data_;
  LoaderOptions options_;
  Backend& backend_;
  ImageTransform transform_;
  int64_t batches_ = 0;
  Tensor images_;        // u8 [M, H, W, C] on the device
  Tensor order_device_;  // i32 [M] on the device: the current epoch's order
  std::vector<int64_t> order_;
  AugmentBatchSpec spec_;  // of the current epoch
  bool started_ = false;
  int64_t epoch_ = 0;
  int64_t next_ = 0;
  Tensor outputs_[2];  // f32 [n, H, W, C] on the device, used in turn
  int slot_ = 0;

  mutable std::once_flag fingerprint_once_;
  mutable std::string fingerprint_;
};

}  // namespace convnet
