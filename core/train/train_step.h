// TrainStep: one optimisation step on a built graph, as the trainer runs it and `convnet benchmark`
// times it: forward, softmax cross-entropy, the step's statistics added to running sums on the
// device (Backend::accumulate_train_stats), backward and the SGD update. Nothing is read back per
// step: on a GPU the host only queues work, and the GPU never idles while the host reads the loss.
// read_stats() copies the sums to the host (the step's one synchronization), every few steps.
#pragma once

#include <cstdint>

#include "core/dist/replica_group.h"
#include "core/optim/sgd.h"
#include "core/train/graph.h"

namespace convnet {

// Sums over the steps since reset().
struct TrainStats {
  double loss_sum = 0;  // of the per-step mean losses (label smoothing included)
  int64_t correct = 0;  // training images whose top-1 prediction was right
  // The first step (as numbered by forward()) whose loss was NaN or infinite, and that loss;
  // -1 while every loss was finite.
  int64_t first_nonfinite_step = -1;
  double nonfinite_loss = 0;
  bool finite() const { return first_nonfinite_step < 0; }
};

// Data-parallel: the statistics of the whole global batches from each rank's (identical on every
// rank): loss_sum is the mean of the ranks' sums of per-step mean losses (equal shards: the global
// mean loss), correct their sum, and the first non-finite step the lowest any rank saw.
TrainStats combine_over_ranks(const TrainStats& mine, ReplicaGroup& group);

class GradientReducer;

class TrainStep {
 public:
  // Dropout masks of step s come from hash64(seed, s - 1), so a resumed run draws what an
  // uninterrupted one would.
  TrainStep(Graph& graph, Sgd& sgd, float label_smoothing, uint64_t seed);

  // Forward and loss of one batch: images on any device (a host batch is copied by the graph;
  // uploads queued with copy_async on the first layer's backend are awaited first), labels host
  // i32 [N]. `step` numbers the step (1 = the run's first) in the statistics.
  void forward(const Tensor& images, const Tensor& labels, int64_t step);
  // Backward and SGD update (lr, the epoch for per-parameter train_epochs) of the last forward().
  // With a gradient reducer (data-parallel), the gradients are averaged over the ranks first.
  void backward_and_update(double lr, int64_t epoch);
  // Data-parallel training: `reducer` (null: none) averages the gradients, and the dropout masks
  // of rank r > 0 are drawn from hash64(hash64(seed, s - 1), r), so ranks do not repeat each
  // other's masks while rank 0 draws a single process's.
  void set_data_parallel(GradientReducer* reducer, int rank);

  // The sums since the last reset_stats(): waits for the queued steps.
  TrainStats read_stats();
  void reset_stats();

 private:
  void ensure_buffers(const Shape& logits_shape);

  Graph& graph_;
  Sgd& sgd_;
  Backend& loss_backend_;  // the last layer's
  float smoothing_;
  uint64_t seed_;
  GradientReducer* reducer_ = nullptr;
  int rank_ = 0;
  Tensor loss_, probs_, dlogits_, labels_;  // on loss_backend_, sized for the batch
  Tensor stats_;                            // f64 [4] on loss_backend_ (Backend::accumulate_train_stats)
  Tensor host_stats_{Shape{4}, DType::f64};
};

}  // namespace convnet
