// Batch normalization over all but the last dimension (semantics of Backend::batch_norm_*).
// Per-channel statistics are accumulated in double through column_reduce, so they are stable and
// identical under any thread count.
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// Throws convnet::Error when a channel has a single value (the unbiased variance is undefined).
void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& saved_mean,
                              Tensor& saved_invstd, Tensor& running_mean, Tensor& running_var, float momentum,
                              float eps);
// Training with the statistics given (Backend::batch_norm_forward_train_from_moments): the same
// formulas, from mean and var = m2 / rows.
void batch_norm_forward_train_from_moments(const Tensor& x, const Tensor& mean, const Tensor& m2, const Tensor& gamma,
                                           const Tensor& beta, Tensor& y, Tensor& saved_mean, Tensor& saved_invstd,
                                           Tensor& running_mean, Tensor& running_var, float momentum, float eps);
void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, Tensor& y);
// dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
void batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                         const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta);

// The pieces synchronized batchnorm combines across ranks (Backend::batch_norm_local_stats,
// batch_norm_backward_reduce, batch_norm_backward_apply): the same reductions and formulas as above.
void batch_norm_local_stats(const Tensor& x, Tensor& mean, Tensor& m2);
void batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& saved_mean, const Tensor& saved_invstd,
                                Tensor& sum_dy, Tensor& sum_dy_xhat);
void batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                               const Tensor& saved_invstd, const Tensor& mean_dy, const Tensor& mean_dy_xhat,
                               Tensor& dx);

}  // namespace convnet::cpu
