// Softmax cross-entropy with label smoothing, mean over the batch (semantics of
// Backend::softmax_cross_entropy_*). Target row: (1 - s) one-hot(label) + s / K.
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// loss [1] = mean over rows of (logsumexp(z) - sum_k target_k z_k); probs [N, K] = softmax(z),
// computed with the row maximum subtracted. Throws convnet::Error for a label outside [0, K).
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, float smoothing, Tensor& loss,
                                   Tensor& probs);
// dlogits [N, K] = (probs - target) / N.
void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, float smoothing, Tensor& dlogits);

}  // namespace convnet::cpu
