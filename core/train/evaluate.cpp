#include "core/train/evaluate.h"

#include "core/base/error.h"

namespace convnet {

void count_predictions(const Tensor& logits, const Tensor& labels, std::vector<std::vector<int64_t>>& confusion) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  const float* z = logits.f32();
  const int32_t* y = labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (z[i * k + j] > z[i * k + best]) best = j;
    confusion[static_cast<size_t>(y[i])][static_cast<size_t>(best)] += 1;
  }
}

EvalResult evaluate(Graph& graph, BatchSource& data) {
  const int k = data.num_classes();
  Backend& backend = graph.output_backend();
  EvalResult r;
  r.confusion.assign(static_cast<size_t>(k), std::vector<int64_t>(static_cast<size_t>(k), 0));
  double loss_sum = 0;
  Tensor loss = backend.empty({1}), host_loss({1});
  Tensor probs, labels_dev, host_logits;  // reallocated only when the batch size changes
  Batch batch;
  data.start_epoch(0);
  while (data.next(batch)) {
    const Tensor& logits = graph.forward(batch.images, Mode::eval);
    const int64_t n = logits.dim(0);
    if (!probs.defined() || probs.dim(0) != n) {
      probs = backend.empty(logits.shape());
      labels_dev = backend.empty({n}, DType::i32);
      host_logits = Tensor(logits.shape());
    }
    backend.copy(labels_dev, batch.labels);
    backend.softmax_cross_entropy_forward(logits, labels_dev, 0.0f, loss, probs);
    backend.copy(host_loss, loss);
    backend.copy(host_logits, logits);
    backend.synchronize();
    loss_sum += static_cast<double>(host_loss.f32()[0]) * static_cast<double>(n);
    count_predictions(host_logits, batch.labels, r.confusion);
    r.num_examples += n;
  }
  if (r.num_examples == 0) throw Error("evaluation data set is empty");
  int64_t correct = 0;
  r.per_class_accuracy.assign(static_cast<size_t>(k), 0.0);
  for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
    int64_t total = 0;
    for (int64_t v : r.confusion[c]) total += v;
    correct += r.confusion[c][c];
    if (total > 0) r.per_class_accuracy[c] = static_cast<double>(r.confusion[c][c]) / static_cast<double>(total);
  }
  r.loss = loss_sum / static_cast<double>(r.num_examples);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(r.num_examples);
  return r;
}

}  // namespace convnet
