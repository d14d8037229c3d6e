// TtaLogits: a batch's logits averaged over the views of a test-time augmentation (tta_views in
// core/train/evaluate.h), in eval mode, on the graph's output device. Shared by evaluate() and
// `convnet predict`. Keeps its buffers from batch to batch (reallocated on a new batch size).
#pragma once

#include <vector>

#include "core/train/evaluate.h"
#include "core/train/graph.h"

namespace convnet {

class TtaLogits {
 public:
  TtaLogits(Graph& graph, Tta tta) : graph_(graph), views_(tta_views(tta)) {}
  // `images` on the host or on any device; the result is valid until the next call.
  const Tensor& operator()(const Tensor& images);

 private:
  Graph& graph_;
  std::vector<TtaView> views_;
  Tensor staged_, view_images_, mean_logits_;
};

}  // namespace convnet
