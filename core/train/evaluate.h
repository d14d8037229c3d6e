// Evaluation over a whole data split: mean cross-entropy, top-1, per-class accuracy, confusion.
#pragma once

#include <cstdint>
#include <vector>

#include "core/base/batch.h"
#include "core/train/graph.h"

namespace convnet {

struct EvalResult {
  double loss = 0;      // mean cross-entropy (no label smoothing)
  double accuracy = 0;  // top-1, in [0, 1]
  int64_t num_examples = 0;
  std::vector<double> per_class_accuracy;       // [num_classes]; NaN-free: 0 for absent classes
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
};

// Runs every batch of `data` (epoch 0, in order) through `graph` in eval mode.
EvalResult evaluate(Graph& graph, BatchSource& data);

// Top-1 predictions of host logits [N, K].
void count_predictions(const Tensor& host_logits, const Tensor& host_labels,
                       std::vector<std::vector<int64_t>>& confusion);

}  // namespace convnet
