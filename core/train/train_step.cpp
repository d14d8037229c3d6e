#include "core/train/train_step.h"

#include "core/base/error.h"
#include "core/base/rng.h"

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
  graph_.set_step_seed(hash64(seed_, static_cast<uint64_t>(step - 1)));
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
  sgd_.step(lr, epoch);
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
