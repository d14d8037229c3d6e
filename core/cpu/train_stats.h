// Training statistics of one step added to running sums (semantics of
// Backend::accumulate_train_stats): the trainer reads them every few steps instead of every step.
#pragma once

#include <cstdint>

#include "core/base/tensor.h"

namespace convnet::cpu {

// loss f32 [1], logits f32 [N, K], labels i32 [N], stats f64 [4] = {loss sum, correct count,
// first non-finite step (< 0: none yet), that step's loss}.
void accumulate_train_stats(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t step,
                            Tensor& stats);

}  // namespace convnet::cpu
