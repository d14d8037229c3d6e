// Batch normalization kernels over all but the last dimension (semantics of Backend::batch_norm_*,
// formulas of core/cpu/batch_norm.cpp). x is viewed as a row-major [rows, channels] matrix.
//
// Per-channel statistics are deterministic column reductions in double (cuda/reduce_kernels.h):
// training takes the mean first, then the variance around it (two passes, no cancellation for
// large offsets); backward takes sum dy and sum dy * xhat in one pass. A per-channel kernel turns
// the sums into the float coefficients, and an elementwise kernel (128-bit accesses when
// channels % 4 == 0 and the pointers are aligned) applies them.
//
// Preconditions, validated by the caller (kernel files do not throw): 1 <= channels <=
// kReduceMaxCols; rows >= 2 for training, rows >= 0 otherwise; every pointer is a device pointer;
// `scratch` holds batch_norm_scratch_bytes(rows, channels) bytes, 8-byte aligned, and nothing else
// uses it until the queued work is done. Launchers queue work on `stream` and return.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace convnet::cuda {

// The x every launcher below reads: f32, or bf16 bits (a conv output stored bf16, bf16 activation
// storage) read widened exactly, giving the bits its f32 widening gives. Implicit from either
// pointer type, so callers pass a device pointer as before.
struct ActivationIn {
  ActivationIn(const float* p) : data(p), bf16(false) {}    // NOLINT(google-explicit-constructor)
  ActivationIn(const uint16_t* p) : data(p), bf16(true) {}  // NOLINT(google-explicit-constructor)
  const void* data;
  bool bf16;
};

// Device scratch bytes any launcher below needs for `rows` x `channels`.
size_t batch_norm_scratch_bytes(int64_t rows, int64_t channels);

// y = (x - mean) * (gamma * invstd) + beta with the batch mean and biased variance;
// saved_mean = mean, saved_invstd = 1 / sqrt(var + eps); running = (1 - momentum) * running +
// momentum * stat, with the unbiased variance var * rows / (rows - 1) for running_var.
void launch_batch_norm_forward_train(ActivationIn x, const float* gamma, const float* beta, float* y, float* saved_mean,
                                     float* saved_invstd, float* running_mean, float* running_var, int64_t rows,
                                     int64_t channels, float momentum, float eps, void* scratch, cudaStream_t stream);
// The same with the statistics given (Backend::batch_norm_forward_train_from_moments): mean and
// m2 [channels] of x's rows, var = m2 / rows. No pass over x but the normalization's.
void launch_batch_norm_forward_train_from_moments(ActivationIn x, const float* mean, const float* m2,
                                                  const float* gamma, const float* beta, float* y, float* saved_mean,
                                                  float* saved_invstd, float* running_mean, float* running_var,
                                                  int64_t rows, int64_t channels, float momentum, float eps,
                                                  void* scratch, cudaStream_t stream);
// A convolution's output sums (ConvOutputStats) turned into the moments above, in place, in
// double: mean = sum / rows, m2 = max(sum_sq - sum * mean, 0). rows >= 1.
void launch_moments_from_sums(float* sum_into_mean, float* sum_sq_into_m2, int64_t rows, int64_t channels,
                              cudaStream_t stream);
// y = (x - running_mean) * (gamma / sqrt(running_var + eps)) + beta.
void launch_batch_norm_forward_eval(ActivationIn x, const float* gamma, const float* beta, const float* running_mean,
                                    const float* running_var, int64_t rows, int64_t channels, float eps, float* y,
                                    void* scratch, cudaStream_t stream);
// dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
// with xhat = (x - saved_mean) * saved_invstd. dx may alias dy.
void launch_batch_norm_backward(ActivationIn x, const float* dy, const float* gamma, const float* saved_mean,
                                const float* saved_invstd, int64_t rows, int64_t channels, float* dx, float* dgamma,
                                float* dbeta, void* scratch, cudaStream_t stream);

// The pieces of synchronized batchnorm (Backend::batch_norm_local_stats etc.), from the same
// reductions as above. local_stats: mean = sum x / rows and m2 = sum (x - mean)^2 (zeros when rows
// == 0). backward_reduce: sum_dy = sum dy and sum_dy_xhat = sum dy * xhat. backward_apply: dx as
// launch_batch_norm_backward's with the given means (dx may alias dy); scratch is used for the
// per-channel gamma * invstd.
void launch_batch_norm_local_stats(ActivationIn x, int64_t rows, int64_t channels, float* mean, float* m2,
                                   void* scratch, cudaStream_t stream);
void launch_batch_norm_backward_reduce(ActivationIn x, const float* dy, const float* saved_mean,
                                       const float* saved_invstd, int64_t rows, int64_t channels, float* sum_dy,
                                       float* sum_dy_xhat, void* scratch, cudaStream_t stream);
void launch_batch_norm_backward_apply(ActivationIn x, const float* dy, const float* gamma, const float* saved_mean,
                                      const float* saved_invstd, const float* mean_dy, const float* mean_dy_xhat,
                                      int64_t rows, int64_t channels, float* dx, void* scratch, cudaStream_t stream);

}  // namespace convnet::cuda
