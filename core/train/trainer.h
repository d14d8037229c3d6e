// Trainer: the training loop. Pulls batches, runs forward / loss / backward / SGD on the graph's
// backends, evaluates, writes metrics.jsonl, the plot and checkpoints into config.output.dir.
//
// Guarantees:
// - Same config and seed -> the same run; `--resume last.safetensors` continues exactly where the
//   checkpoint was written (N steps + save + resume + N steps == 2N steps, bit for bit on CPU).
// - The host never waits for the device inside a step: the loss and the correct predictions are
//   summed on the loss layer's backend (TrainStep) and read back every train.log_every steps, at
//   the end of an epoch, before a checkpoint and on a signal. Results are the same as reading
//   them every step (bit for bit on the CPU).
// - A NaN or Inf loss stops training with an Error at the next read, naming the step where it
//   first appeared and the range of steps read; checkpoints are written only after a read that
//   found every loss finite, so the last good checkpoint is left untouched.
// - SIGINT / SIGTERM: the current step finishes, last.safetensors is written, run() returns with
//   `interrupted` set.
// - metrics.jsonl gets a training line every train.log_every steps and at every epoch's (and the
//   run's) last step, written before that step's checkpoint, and a test line per evaluation,
//   written before the checkpoint of the epoch's end. A resume drops the lines after the
//   checkpoint's step (a killed run's) and, when the checkpoint was written before its epoch's
//   ending, that step's test lines, so every line appears once whatever moment a run was killed.
// - A checkpoint that cannot be written (full disk, unwritable folder) is an Error naming it and
//   saying the previous file there is intact (writes are atomic). best.safetensors is written
//   before last.safetensors at an epoch's end, so a run killed in between redoes both.
// - The folder itself (lock, a fresh run refusing an existing one) is RunFolder's
//   (core/train/run_folder.h), taken by the CLI's run_training before the data is loaded.
// - train.epochs may be fractional: the run is ceil(epochs * steps per epoch) steps, and the last
//   (partial) epoch ends after that step with the same final evaluation, checkpoints and plot as a
//   full epoch. train.max_steps and signals stop without that ending (a resume finishes the run).
// - ema.mode ema | lookahead: a WeightAverage follows the schedule of EmaConfig; with ema the test
//   evaluations and the saved model use the average (see checkpoint.h for the file layout).
// - Test evaluations use train.tta.
// - Data-parallel (a ReplicaGroup of N ranks, core/dist): every rank runs this loop on its shard of
//   each global batch; GradientReducer averages the gradients, so the ranks keep identical weights
//   and optimizer state. The statistics, the NaN check, signals and evaluations are combined over
//   the ranks, so every rank takes the same decisions at the same step. Rank 0 alone writes
//   config.yaml, metrics, the plot and checkpoints, and shows progress; images/s are global.
//   Before an evaluation every rank takes rank 0's batchnorm running statistics (as DDP's
//   broadcast_buffers), so evaluating and saving see rank 0's model. A checkpoint resumes on any
//   number of ranks that divides train.batch_size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/batch.h"
#include "core/config/config.h"
#include "core/dist/replica_group.h"
#include "core/optim/weight_average.h"
#include "core/train/evaluate.h"
#include "core/train/graph.h"

namespace convnet {

struct TrainResult {
  int64_t steps = 0;           // optimizer steps completed in all (including before a resume)
  double last_train_loss = 0;  // mean training loss over the last epoch (or partial epoch)
  double final_test_accuracy = -1;
  double best_test_accuracy = -1;
  double seconds = 0;  // wall time of this run() call
  bool interrupted = false;
  int signal = 0;  // the signal that interrupted the run
};

// What a WeightAverage averages in `graph`: every trainable parameter value (frozen ones never
// change, so they are left out) and every f32 buffer, named like the checkpoint tensors.
std::vector<AveragedTensor> weight_average_targets(Graph& graph);

class Trainer {
 public:
  // `graph` must be built; `test` may be null (no evaluation). `config_yaml` is saved in
  // checkpoints and in output.dir/config.yaml. `group` (null: this process alone): data-parallel
  // training, with `train` and `test` giving this rank's shard of every batch (see "Data-parallel").
  Trainer(const Config& config, std::string config_yaml, Graph& graph, BatchSource& train, BatchSource* test,
          ReplicaGroup* group = nullptr);
  TrainResult run(const std::string& resume_path = "");

 private:
  Config config_;
  std::string config_yaml_;
  Graph& graph_;
  BatchSource& train_;
  BatchSource* test_;
  SingleProcess single_;
  ReplicaGroup* group_;
};

}  // namespace convnet
