#include "core/train/evaluate.h"

#include "core/base/error.h"
#include "core/train/tta_logits.h"

namespace convnet {

void count_predictions(const Tensor& logits, const Tensor& labels, std::vector<std::vector<int64_t>>& confusion) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  const float* z = logits.f32();
  const int32_t* y = labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) confusion[static_cast<size_t>(y[i])][static_cast<size_t>(top1(z + i * k, k))] += 1;
}

Tta parse_tta(const std::string& name, const std::string& key) {
  if (name == "none") return Tta::none;
  if (name == "flip") return Tta::flip;
  if (name == "flip_translate") return Tta::flip_translate;
  throw ConfigError(fmt::format("{}: expected none, flip or flip_translate, got '{}'", key, name));
}

std::string tta_name(Tta tta) {
  switch (tta) {
    case Tta::none:
      return "none";
    case Tta::flip:
      return "flip";
    case Tta::flip_translate:
      return "flip_translate";
  }
  return "none";
}

std::vector<TtaView> tta_views(Tta tta) {
  auto view = [](int shift, bool flip) {
    ImageView v;
    v.shift_y = v.shift_x = shift;
    v.flip = flip;
    v.pad_mode = PadMode::reflect;
    return v;
  };
  switch (tta) {
    case Tta::none:
      return {{view(0, false), 1.0}};
    case Tta::flip:
      return {{view(0, false), 0.5}, {view(0, true), 0.5}};
    case Tta::flip_translate:
      return {{view(0, false), 0.25},  {view(0, true), 0.25},   {view(-1, false), 0.125},
              {view(-1, true), 0.125}, {view(1, false), 0.125}, {view(1, true), 0.125}};
  }
  return {{view(0, false), 1.0}};
}

namespace {

// Sums loss_sum, the example count and the confusion matrix over the ranks.
void sum_over_ranks(ReplicaGroup& group, double& loss_sum, EvalResult& r) {
  std::vector<double> values = {loss_sum, static_cast<double>(r.num_examples)};
  for (const std::vector<int64_t>& row : r.confusion)
    for (int64_t v : row) values.push_back(static_cast<double>(v));
  group.sum(values);
  loss_sum = values[0];
  r.num_examples = static_cast<int64_t>(values[1]);
  size_t i = 2;
  for (std::vector<int64_t>& row : r.confusion)
    for (int64_t& v : row) v = static_cast<int64_t>(values[i++]);
}

}  // namespace

EvalResult evaluate(Graph& graph, BatchSource& data, Tta tta, ReplicaGroup* group) {
  const int k = data.num_classes();
  Backend& backend = graph.output_backend();
  TtaLogits tta_logits(graph, tta);
  EvalResult r;
  r.confusion.assign(static_cast<size_t>(k), std::vector<int64_t>(static_cast<size_t>(k), 0));
  double loss_sum = 0;
  Tensor loss = backend.empty({1}), host_loss({1});
  // Reallocated only when the batch size changes.
  Tensor probs, labels_dev, host_logits;
  Batch batch;
  data.start_epoch(0);
  while (data.next(batch)) {
    if (batch.labels.numel() == 0) continue;  // this rank's shard of a short last batch
    const Tensor* logits = &tta_logits(batch.images);
    const int64_t n = logits->dim(0);
    if (!probs.defined() || probs.dim(0) != n) {
      probs = backend.empty(logits->shape());
      labels_dev = backend.empty({n}, DType::i32);
      host_logits = Tensor(logits->shape());
    }
    backend.copy(labels_dev, batch.labels);
    backend.softmax_cross_entropy_forward(*logits, labels_dev, 0.0f, loss, probs);
    backend.copy(host_loss, loss);
    backend.copy(host_logits, *logits);
    backend.synchronize();
    loss_sum += static_cast<double>(host_loss.f32()[0]) * static_cast<double>(n);
    count_predictions(host_logits, batch.labels, r.confusion);
    r.num_examples += n;
  }
  if (group && group->size() > 1) sum_over_ranks(*group, loss_sum, r);
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
