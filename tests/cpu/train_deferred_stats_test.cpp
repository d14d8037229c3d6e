// The training loop's host side: the loss and accuracy are summed on the device and read back only
// every train.log_every steps (and at the epoch's end, before a checkpoint, on a signal), the
// upload of the next batch is queued before the current batch's backward pass and awaited only by
// the first op that reads it, and a NaN loss is caught at the next read with the step it came
// from, leaving the last checkpoint (written after a finite read) untouched.
//
// The queue order is checked on a RecordingBackend (a stand-in GPU backend that records calls);
// the NaN handling on the cpu backend, with a data set whose batch k holds a NaN pixel.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/train/trainer.h"
#include "models/model_builder.h"
#include "tests/common/recording_backend.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::RecordingBackend;
using testing::TempDir;

constexpr int64_t kBatch = 8;
constexpr int64_t kBatches = 12;
const Shape kExample = {8, 8, 3};

// kBatches host batches of random images per epoch; batch `nan_batch` (if >= 0) has a NaN pixel.
class HostBatches final : public BatchSource {
 public:
  explicit HostBatches(int64_t nan_batch = -1) : nan_batch_(nan_batch) {}
  int64_t num_examples() const override { return kBatch * kBatches; }
  int64_t batches_per_epoch() const override { return kBatches; }
  Shape example_shape() const override { return kExample; }
  int num_classes() const override { return 10; }
  std::vector<std::string> class_names() const override { return std::vector<std::string>(10, "c"); }
  void start_epoch(int64_t epoch, int64_t first_batch) override {
    epoch_ = epoch;
    next_ = first_batch;
  }
  bool next(Batch& batch) override {
    if (next_ >= kBatches) return false;
    Rng rng(hash64(static_cast<uint64_t>(epoch_), static_cast<uint64_t>(next_)));
    batch.images = testing::random_tensor({kBatch, kExample[0], kExample[1], kExample[2]}, rng);
    if (next_ == nan_batch_) batch.images.f32()[5] = std::nanf("");
    batch.labels = testing::random_labels(kBatch, 10, rng);
    batch.epoch = epoch_;
    batch.index = next_++;
    return true;
  }
  std::string fingerprint() const override { return "host-batches"; }

 private:
  int64_t nan_batch_;
  int64_t epoch_ = 0, next_ = 0;
};

// No batch norm between the input and the loss: a NaN pixel reaches the logits. With `relu`, a
// ReLU after the convolution, which must let the NaN through (as torch.relu does).
Config small_config(const std::string& out_dir, const std::vector<std::string>& extra = {}, bool relu = false) {
  std::vector<std::string> overrides = {"output.dir=" + out_dir};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_config(fmt::format(R"(
model:
  name: sequential
  layers:
    - {{type: conv, out_channels: 4, kernel: 3, padding: 1}}{}
    - {{type: max_pool, kernel: 2}}
    - {{type: flatten}}
    - {{type: linear, out_features: 10}}
optimizer: {{lr: 0.05, momentum: 0.9}}
train: {{epochs: 1, batch_size: 8, seed: 3, log_every: 4, threads: 1}}
output: {{plot: none}}
)",
                                  relu ? "\n    - {type: relu}" : ""),
                      "deferred.yaml", overrides);
}

TrainResult train_on(Backend& backend, const Config& config, BatchSource& data) {
  Graph graph;
  add_model_layers(config.model, kExample, graph);
  Rng rng(config.train.seed);
  graph.build(kExample, backend, rng);
  Trainer trainer(config, to_yaml(config), graph, data, nullptr);
  return trainer.run();
}

::testing::AssertionResult has(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

// Indices of the calls equal to `name` (or starting with it, for copies).
std::vector<size_t> find_calls(const std::vector<std::string>& calls, const std::string& prefix) {
  std::vector<size_t> at;
  for (size_t i = 0; i < calls.size(); ++i)
    if (calls[i].starts_with(prefix)) at.push_back(i);
  return at;
}

TEST(TrainDeferredStats, StepsQueueWithoutReadingBackAndUploadsAreAwaitedByTheirFirstReader) {
  TempDir dir;
  RecordingBackend gpu;
  HostBatches data;
  const TrainResult r = train_on(gpu, small_config(dir.path()), data);
  ASSERT_EQ(r.steps, kBatches);
  const std::vector<std::string>& calls = gpu.calls;

  const std::vector<size_t> stats = find_calls(calls, "accumulate_train_stats");
  const std::vector<size_t> uploads = find_calls(calls, "copy_async");
  const std::vector<size_t> forwards = find_calls(calls, "conv2d_forward");  // the first layer, once a step
  const std::vector<size_t> backwards = find_calls(calls, "softmax_cross_entropy_backward");
  ASSERT_EQ(stats.size(), static_cast<size_t>(kBatches));
  ASSERT_EQ(uploads.size(), static_cast<size_t>(kBatches)) << "each host batch is uploaded once";
  ASSERT_EQ(forwards.size(), static_cast<size_t>(kBatches));
  ASSERT_EQ(backwards.size(), static_cast<size_t>(kBatches));

  for (size_t k = 0; k < static_cast<size_t>(kBatches); ++k) {
    // The batch's first reader waits for the upload, and nothing is queued between the two.
    ASSERT_GT(forwards[k], 0u);
    EXPECT_EQ(calls[forwards[k] - 1], "await_uploads") << "step " << k + 1;
    EXPECT_LT(uploads[k], forwards[k]) << "step " << k + 1;
    // Batch k+1 is uploaded after step k's loss and before its backward pass, which it overlaps.
    if (k + 1 < uploads.size()) {
      EXPECT_GT(uploads[k + 1], stats[k]) << "step " << k + 1;
      EXPECT_LT(uploads[k + 1], backwards[k]) << "step " << k + 1;
    }
  }

  // The host reads back (a device -> host copy) only the statistics, at steps 4, 8 and 12 (the
  // last is also the epoch's end), and never waits for the device before the final checkpoint.
  const size_t last_step_end = stats.back();
  std::vector<size_t> reads;
  for (const size_t i : find_calls(calls, "copy d2h")) {
    if (i > last_step_end && reads.size() == 3) break;  // the end-of-run checkpoint's downloads
    EXPECT_EQ(calls[i], "copy d2h F64 [4]") << "call " << i;
    reads.push_back(i);
  }
  ASSERT_EQ(reads.size(), 3u);
  for (size_t j = 0; j < reads.size(); ++j) {
    const size_t after_step = 4 * (j + 1);  // 1-based step
    EXPECT_GT(reads[j], stats[after_step - 1]) << "read " << j;
    if (after_step < stats.size()) {
      EXPECT_LT(reads[j], stats[after_step]) << "read " << j;
    }
  }
  for (const size_t i : find_calls(calls, "synchronize")) EXPECT_GT(i, reads.back()) << "a wait inside the steps";
}

TEST(TrainDeferredStats, NanAtStepKStopsAtTheNextReadNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  HostBatches data(/*nan_batch=*/9);  // step 10
  const Config config = small_config(dir.path(), {"train.checkpoint_every=4"});
  try {
    train_on(*cpu, config, data);
    FAIL() << "expected a NaN loss error";
  } catch (const Error& e) {
    const std::string last = dir.file("last.safetensors");
    EXPECT_EQ(std::string(e.what()),
              "step 10 (epoch 1, batch 10): the loss is nan; training stopped when steps 9-12 were read back. The last "
              "good checkpoint is " +
                  last + " (step 8). Try a lower optimizer.lr or more warm-up.");
  }
  // Written after the finite read at step 8; the read at step 12 stopped the run before saving.
  const SafetensorsFile saved = read_safetensors(dir.file("last.safetensors"));
  EXPECT_EQ(saved.metadata.at("convnet.step"), "8");
  for (const NamedTensor& t : saved.tensors) {
    if (t.tensor.dtype() != DType::f32) continue;
    const std::span<const float> values = t.tensor.span();
    EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); })) << t.name;
  }
}

TEST(TrainDeferredStats, NanPixelBeforeAReluStillStopsTheRun) {
  TempDir dir;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  HostBatches data(/*nan_batch=*/1);
  try {
    train_on(*cpu, small_config(dir.path(), {}, /*relu=*/true), data);
    FAIL() << "expected a NaN loss error: the ReLU swallowed the NaN";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "step 2 (epoch 1, batch 2): the loss is nan"));
  }
}

TEST(TrainDeferredStats, NanBeforeAnyCheckpointSaysThereIsNone) {
  TempDir dir;
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  HostBatches data(/*nan_batch=*/1);  // step 2, read at step 4
  try {
    train_on(*cpu, small_config(dir.path()), data);
    FAIL() << "expected a NaN loss error";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "step 2 (epoch 1, batch 2): the loss is nan"));
    EXPECT_TRUE(has(e.what(), "steps 1-4 were read back"));
    EXPECT_TRUE(has(e.what(), "last.safetensors (none yet)"));
  }
}

}  // namespace
}  // namespace convnet
