// Evaluation over a whole data split: mean cross-entropy, top-1, per-class accuracy, confusion,
// optionally with test-time augmentation (TTA).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/batch.h"
#include "core/base/top1.h"
#include "core/dist/replica_group.h"
#include "core/train/graph.h"

namespace convnet {

struct EvalResult {
  double loss = 0;      // mean cross-entropy (no label smoothing)
  double accuracy = 0;  // top-1, in [0, 1]
  int64_t num_examples = 0;
  std::vector<double> per_class_accuracy;       // [num_classes]; NaN-free: 0 for absent classes
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
};

// Test-time augmentation (TrainConfig::tta): the logits of a batch are the weighted mean of the
// logits of several views of it (Backend::image_view, reflect padding):
//   none:           the images alone;
//   flip:           1/2 the images + 1/2 their mirror;
//   flip_translate: airbench's tta_level 2, 0.5 * m(x) + 0.25 * m(shift(x, -1, -1)) +
//                   0.25 * m(shift(x, +1, +1)) with m(v) = (v + mirror(v)) / 2, i.e. six views at
//                   weights 1/4, 1/4, 1/8, 1/8, 1/8, 1/8; shift(x, -1, -1) is the image whose
//                   pixel (y, x) is the input's (y - 1, x - 1).
enum class Tta { none, flip, flip_translate };
// "none" | "flip" | "flip_translate"; anything else is a ConfigError naming `key`.
Tta parse_tta(const std::string& name, const std::string& key = "train.tta");
std::string tta_name(Tta tta);
struct TtaView {
  ImageView view;  // the identity for the plain images
  double weight;
};
std::vector<TtaView> tta_views(Tta tta);  // weights sum to 1; the identity view comes first

// Runs every batch of `data` (epoch 0, in order) through `graph` in eval mode, averaging the
// logits of the TTA views; loss, accuracy and confusion come from the averaged logits. Batch
// images may be on the host or already on a device; views are built on the first layer's device.
// Data-parallel (`group` of several ranks): `data` gives this rank's shard of every batch (possibly
// empty), the sums are combined over the ranks, and every rank returns the whole split's result.
EvalResult evaluate(Graph& graph, BatchSource& data, Tta tta = Tta::none, ReplicaGroup* group = nullptr);

// Adds the top-1 predictions (core/base/top1.h) of host logits [N, K] to confusion[label][predicted].
void count_predictions(const Tensor& host_logits, const Tensor& host_labels,
                       std::vector<std::vector<int64_t>>& confusion);

}  // namespace convnet
