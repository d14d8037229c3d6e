// Kernel launchers shared by the `cuda` and `cudnn` backends (cuda/common_kernels.cu). Every
// launcher queues work on `stream` and returns; pointers are device pointers; a failed launch
// throws convnet::Error. Results are deterministic: no float atomics, reductions in a fixed order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/base/backend.h"

namespace convnet::cuda {

void launch_fill(float* p, int64_t n, float value, cudaStream_t stream);

// Backend::dropout_* semantics: keep element i iff hash_uniform(seed, i) >= p.
void launch_dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed,
                            cudaStream_t stream);
void launch_dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p, cudaStream_t stream);

// Backend::softmax_cross_entropy_* semantics for logits [n, k]. `row_loss` is device scratch of
// n floats; loss[0] = mean of row_loss summed in a fixed order. Labels outside [0, k) make the
// loss NaN (the trainer stops on it) instead of reading out of bounds.
void launch_softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                          float smoothing, float* probs, float* row_loss, float* loss,
                                          cudaStream_t stream);
void launch_softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k,
                                           float smoothing, float* dlogits, cudaStream_t stream);

// Backend::accumulate_train_stats semantics: loss [1], logits [n, k], labels [n], stats (f64) [4].
void launch_accumulate_train_stats(const float* loss, const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   int64_t step, double* stats, cudaStream_t stream);

// Backend::sgd_update semantics (SgdStep); momentum may be null when step.momentum == 0, and
// bf16_copy when no bf16 copy of param is kept.
void launch_sgd_update(float* param, const float* grad, float* momentum, uint16_t* bf16_copy, int64_t n,
                       const SgdStep& step, cudaStream_t stream);

}  // namespace convnet::cuda
