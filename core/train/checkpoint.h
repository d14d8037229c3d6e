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
// Metadata (all strings): format "pt", convnet.format_version, convnet.step, convnet.epoch,
// convnet.batch_in_epoch (the data position), convnet.rng (training RNG state), convnet.best_accuracy,
// convnet.lr, convnet.config (the effective YAML), convnet.data (data fingerprint), convnet.ema
// (ema | lookahead; absent without averaging), and the checksum that write_safetensors adds.
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
  int64_t step = 0;            // optimizer steps completed
  int64_t epoch = 0;           // epoch of the next batch
  int64_t batch_in_epoch = 0;  // index of the next batch within `epoch`
  Rng::State rng{};
  double best_accuracy = -1;  // best test accuracy so far (-1: none yet)
  double lr = 0;              // learning rate of the last step (informational)
  std::string config_yaml;
  std::string data_fingerprint;
};

// `average` (optional) must not be swapped in (AverageSwapGuard) while saving.
void save_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, const TrainingState& state,
                     WeightAverage* average = nullptr);

// Loads parameters and buffers into the built graph (and momentum buffers when `optimizer` is
// given, and the weight average when `average` is). Validates the file and that every tensor
// matches the model by name, shape and dtype; throws Error naming the checkpoint and the tensor
// otherwise. Resuming training (`optimizer` given) requires the checkpoint's averaging mode to be
// the same as `average`'s (none when null): an Error says which differs. With neither optimizer
// nor average (evaluation) the averaging state in the file is ignored: the model tensors are
// the model.
TrainingState load_checkpoint(const std::string& path, Graph& graph, Sgd* optimizer, WeightAverage* average = nullptr);

// The state and tensor list without a model (for `convnet info` and to rebuild the model).
struct CheckpointSummary {
  TrainingState state;
  std::map<std::string, std::string> metadata;
  struct Entry {
    std::string name;
    std::string dtype;
    Shape shape;
  };
  std::vector<Entry> tensors;
};
CheckpointSummary read_checkpoint_summary(const std::string& path);

}  // namespace convnet
