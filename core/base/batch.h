// A batch of examples and the interface the trainer pulls batches from. datasets/ implements it
// for CIFAR-10 (binary files or image folders) and synthetic data; core never sees file formats.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/tensor.h"

namespace convnet {

struct Batch {
  Tensor images;  // f32 [N, H, W, C], normalised: host memory, or the device of a device-resident loader
  Tensor labels;  // i32 [N], host memory
  int64_t epoch = 0;
  int64_t index = 0;  // batch index within the epoch
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t num_examples() const = 0;
  virtual int64_t batches_per_epoch() const = 0;
  virtual Shape example_shape() const = 0;  // {H, W, C}
  virtual int num_classes() const = 0;
  virtual std::vector<std::string> class_names() const = 0;
  // Starts producing the batches of `epoch`, from batch `first_batch` on (resume mid-epoch).
  // The order and augmentation of every batch depend only on (seed, epoch, index), never on
  // timing or thread count, so a resumed run sees exactly the batches an uninterrupted one would.
  virtual void start_epoch(int64_t epoch, int64_t first_batch = 0) = 0;
  // Fills `batch` with the next batch of the epoch; returns false at the end of the epoch.
  virtual bool next(Batch& batch) = 0;
  // A fingerprint of the underlying data (sizes and a hash of pixels and labels) saved in
  // checkpoints so a resume on different data is caught.
  virtual std::string fingerprint() const = 0;
};

}  // namespace convnet
