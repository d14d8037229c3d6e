// Checkpoints: one safetensors file holding everything a run needs to continue exactly.
//
// Tensors, in PyTorch layouts and names so `model.load_state_dict(safetensors.torch.load_file(f))`
// works for the matching PyTorch module (extra "optimizer.*", "raw.*" and "ema.*" keys aside):
//   <module>.weight / .bias        conv weights as OIHW, linear weights [out, in] with the input
//                                  features in PyTorch's CHW flatten order
//   <module>.running_mean / _var / num_batches_tracked (I64)
//   optimizer.<param>.momentum_buffer   same layout as its parameter
// With weight averaging (WeightAverage, ema.mode) the model tensors are always the model to use:
//   ema.mode ema:       <module>.* hold the averaged weights (what evaluation uses), and
//                       raw.<module>.* the raw training weights the optimizer continues from;
//   ema.mode lookahead: <module>.* hold the training weights (they are the average after each
//                       update and at the end), and ema.<module>.* the average;
// so `convnet evaluate` and PyTorch loading see the averaged model without knowing about EMA.
// Metadata (all strings, each validated at load with an Error naming the file, the key and the
// allowed range): format "pt", convnet.format_version ("2"), convnet.step, convnet.epoch,
// convnet.batch_in_epoch (the data position), convnet.rng (training RNG state, 64 hex digits, not
// all zero), convnet.best_accuracy (-1 or [0, 1]), convnet.lr (finite, >= 0), convnet.config (the
// effective YAML), convnet.data (data fingerprint), convnet.class_names (a JSON list of the training
// data's class names in label order; absent when unknown), convnet.input_shape (JSON [H, W, C] the
// model was built for), convnet.ema (ema | lookahead; absent without averaging), and
// convnet.file_checksum, which write_safetensors adds over the header and the data.
// Format 1 (convnet before the header checksum) is still read: its data checksum must be present
// and match, its metadata is validated like format 2's, it has no class names or input shape.
// A convnet file without a checksum is corrupt. Parameters, buffers, momentum and averages must
// be finite, running variances >= 0 and num_batches_tracked >= 0, when saving and when loading.
// Files are written atomically.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/base/rng.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/graph.h"

namespace convnet {

struct TrainingState {
  int64_t step = 0;                 // optimizer steps completed
  int64_t epoch = 0;                // epoch of the next batch
  int64_t batch_in_epoch = 0;       // index of the next batch within `epoch`
  Rng::State rng = Rng(0).state();  // a valid generator state (all zero is not one)
  double best_accuracy = -1;        // best test accuracy so far (-1: none yet)
  double lr = 0;                    // learning rate of the last step (informational)
  std::string config_yaml;
  std::string data_fingerprint;
  std::vector<std::string> class_names;  // the training data's, in label order (empty: unknown)
};

// `average` (optional) must not be swapped in (AverageSwapGuard) while saving. Refuses, with an
// Error naming the tensor, to write a tensor holding NaN or Inf (check_finite_state).
void save_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, const TrainingState& state,
                     WeightAverage* average = nullptr);

// Throws Error ("{what}: tensor '...' holds nan at index ...") when a parameter or buffer of
// `graph`, a momentum buffer of `optimizer` or a tensor of `average` (both optional) is NaN or Inf.
void check_finite_state(Graph& graph, Sgd* optimizer, WeightAverage* average, const std::string& what);

// Throws Error naming the checkpoint when its position (step, epoch, batch_in_epoch) cannot come
// from a run of `steps_per_epoch` steps per epoch: batch_in_epoch > steps_per_epoch, or more
// steps than the position implies.
void check_resume_position(const TrainingState& state, int64_t steps_per_epoch, const std::string& path);

// Loads parameters and buffers into the built graph (and momentum buffers when `optimizer` is
// given, and the weight average when `average` is). Validates the file and that every tensor
// matches the model by name, shape and dtype; throws Error naming the checkpoint and the tensor
// otherwise. Resuming training (`optimizer` given) requires the checkpoint's averaging mode to be
// the same as `average`'s (none when null): an Error says which differs. With neither optimizer
// nor average (evaluation) the averaging state in the file is ignored: the model tensors are
// the model.
// Only convnet checkpoints: a file without convnet metadata is an Error that suggests --config.
TrainingState load_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, WeightAverage* average = nullptr);

// The model tensors alone (evaluation, `train --init-from`), from a convnet checkpoint or from a
// safetensors file of another writer (PyTorch's `save_file(model.state_dict())`) that uses the
// model's names (models/model_builder.h), PyTorch layouts and dtypes (num_batches_tracked I64).
// Every model tensor must be present with its shape and dtype, and no other tensor (a convnet
// file's optimizer.*, raw.* and ema.* aside); values are checked as in load_checkpoint.
void load_model_weights(const std::string& path, Graph& graph);

// The state and tensor list without a model (for `convnet info` and to rebuild the model).
struct CheckpointSummary {
  bool has_training_state = true;  // false: a foreign file of weights (allow_foreign)
  TrainingState state;
  Shape input_shape;  // {H, W, C} the model was built for; empty when unknown
  std::map<std::string, std::string> metadata;
  struct Entry {
    std::string name;
    std::string dtype;
    Shape shape;
  };
  std::vector<Entry> tensors;
};
// Validates the metadata and every tensor's values as load_checkpoint does. allow_foreign: a
// safetensors file without convnet metadata gives its tensors with has_training_state false
// instead of an Error.
CheckpointSummary read_checkpoint_summary(const std::string& path, bool allow_foreign = false);

}  // namespace convnet
