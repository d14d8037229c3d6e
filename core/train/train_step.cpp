#include "core/train/train_step.h"

#include <array>
#include <cmath>
#include <limits>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/train/gradient_reducer.h"

namespace convnet {

TrainStep::TrainStep(Graph& graph, Sgd& sgd, float label_smoothing, uint64_t seed)
    : graph_(graph), sgd_(sgd), loss_backend_(graph.output_backend()), smoothing_(label_smoothing), seed_(seed) {
  stats_ = loss_backend_.empty({4}, DType::f64);
  reset_stats();
}

void TrainStep::ensure_buffers(const Shape& logits_shape) {
  if (probs_.defined() && probs_.shape() == logits_shape) return;
  loss_ = loss_backend_.empty({1});
  probs_ = loss_backend_.empty(logits_shape);
  dlogits_ = loss_backend_.empty(logits_shape);
  labels_ = loss_backend_.empty({logits_shape[0]}, DType::i32);
}

void TrainStep::forward(const Tensor& images, const Tensor& labels, int64_t step) {
  const uint64_t step_seed = hash64(seed_, static_cast<uint64_t>(step - 1));
  graph_.set_step_seed(rank_ == 0 ? step_seed : hash64(step_seed, static_cast<uint64_t>(rank_)));
  // The first consumer of an upload queued ahead (Backend::copy_async): wait for it only now.
  graph_.layer_backend(0).await_uploads();
  const Tensor& logits = graph_.forward(images, Mode::train);
  ensure_buffers(logits.shape());
  loss_backend_.copy(labels_, labels);
  loss_backend_.softmax_cross_entropy_forward(logits, labels_, smoothing_, loss_, probs_);
  loss_backend_.accumulate_train_stats(loss_, logits, labels_, step, stats_);
}

void TrainStep::backward_and_update(double lr, int64_t epoch) {
  CONVNET_CHECK(probs_.defined(), "TrainStep: backward before forward");
  loss_backend_.softmax_cross_entropy_backward(probs_, labels_, smoothing_, dlogits_);
  graph_.backward(dlogits_);
  if (reducer_) reducer_->finish();
  sgd_.step(lr, epoch);
}

TrainStats combine_over_ranks(const TrainStats& mine, ReplicaGroup& group) {
  if (group.size() == 1) return mine;
  std::array<double, 2> sums = {mine.loss_sum, static_cast<double>(mine.correct)};
  group.sum(sums);
  // The lowest bad step as the max of -step; -infinity where a rank saw none.
  std::array<double, 1> bad = {mine.finite() ? -std::numeric_limits<double>::infinity()
                                             : -static_cast<double>(mine.first_nonfinite_step)};
  group.max(bad);
  TrainStats out;
  out.loss_sum = sums[0] / group.size();
  out.correct = static_cast<int64_t>(sums[1]);
  if (std::isinf(bad[0])) return out;
  out.first_nonfinite_step = static_cast<int64_t>(-bad[0]);
  // That step's loss, from the ranks that saw it (a sum of NaN and infinities stays non-finite).
  std::array<double, 1> loss = {mine.first_nonfinite_step == out.first_nonfinite_step ? mine.nonfinite_loss : 0.0};
  group.sum(loss);
  out.nonfinite_loss = loss[0];
  return out;
}

void TrainStep::set_data_parallel(GradientReducer* reducer, int rank) {
  reducer_ = reducer;
  rank_ = rank;
}

TrainStats TrainStep::read_stats() {
  loss_backend_.copy(host_stats_, stats_);  // a download: waits for the queued steps
  const double* s = host_stats_.data<double>();
  TrainStats out;
  out.loss_sum = s[0];
  out.correct = static_cast<int64_t>(s[1]);
  out.first_nonfinite_step = static_cast<int64_t>(s[2]);
  out.nonfinite_loss = s[3];
  return out;
}

void TrainStep::reset_stats() {
  double* s = host_stats_.data<double>();
  s[0] = 0;
  s[1] = 0;
  s[2] = -1;
  s[3] = 0;
  loss_backend_.copy(stats_, host_stats_);
}

}  // namespace convnet
