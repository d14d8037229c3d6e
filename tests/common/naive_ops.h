// Float64 reference implementations of every Backend op: plain loops written straight from the
// definitions in core/base/backend.h, deliberately sharing no code with any backend. Inputs are
// host f32 tensors (i32 labels); results are doubles in the same layouts the backends use
// (NHWC activations, KRSC filters), ready for close_l2(). CPU and GPU tests both check against these.
#pragma once

#include <cstdint>
#include <vector>

#include "core/base/backend.h"
#include "core/base/tensor.h"

namespace convnet::testing::naive {

// --- convolution ---
// y [N,P,Q,K] from x [N,H,W,C], w [K,R,S,C], bias [K] or null.
std::vector<double> conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p);
// dx [N,H,W,C] (x_shape) from dy [N,P,Q,K] and w.
std::vector<double> conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape,
                                         const Conv2dParams& p);
// dw [K,R,S,C] (w_shape) from x and dy.
std::vector<double> conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Shape& w_shape,
                                           const Conv2dParams& p);
// Sums of t over every dimension but the last: the bias gradient for conv and linear.
std::vector<double> sum_over_last_dim(const Tensor& t);

// --- pooling: x [N,H,W,C] -> [N,P,Q,C] ---
struct MaxPoolResult {
  std::vector<double> y;
  std::vector<int32_t> argmax;  // window-local r * kernel_w + s of the first maximum
};
MaxPoolResult max_pool2d_forward(const Tensor& x, const Pool2dParams& p);
// dx [N,H,W,C]: dy sent to each window's (first) maximum of x.
std::vector<double> max_pool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p);
std::vector<double> avg_pool2d_forward(const Tensor& x, const Pool2dParams& p);  // padding counts as zeros
std::vector<double> avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, const Pool2dParams& p);

// --- activations ---
std::vector<double> relu_forward(const Tensor& x);
std::vector<double> relu_backward(const Tensor& y, const Tensor& dy);
double gelu(double x);             // x * Phi(x)
double gelu_derivative(double x);  // Phi(x) + x * phi(x)
std::vector<double> gelu_forward(const Tensor& x);
std::vector<double> gelu_backward(const Tensor& x, const Tensor& dy);

// --- batch normalization over all but the last dimension ---
struct BatchNormTrain {
  std::vector<double> y, mean, invstd, running_mean, running_var;
};
BatchNormTrain batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        const Tensor& running_mean, const Tensor& running_var, double momentum,
                                        double eps);
std::vector<double> batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                            const Tensor& running_mean, const Tensor& running_var, double eps);
struct BatchNormGrads {
  std::vector<double> dx, dgamma, dbeta;
};
// Gradients of the training forward, with batch statistics recomputed from x.
BatchNormGrads batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, double eps);
// Synchronized batchnorm's pieces (Backend::batch_norm_local_stats etc.), with the given statistics.
struct BatchNormLocalStats {
  std::vector<double> mean, m2;  // m2 = sum (x - mean)^2; both 0 for no rows
};
BatchNormLocalStats batch_norm_local_stats(const Tensor& x);
struct BatchNormSums {
  std::vector<double> sum_dy, sum_dy_xhat;
};
BatchNormSums batch_norm_backward_reduce(const Tensor& x, const Tensor& dy, const Tensor& mean, const Tensor& invstd);
std::vector<double> batch_norm_backward_apply(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                              const Tensor& mean, const Tensor& invstd, const Tensor& mean_dy,
                                              const Tensor& mean_dy_xhat);

// --- dropout ---
struct DropoutResult {
  std::vector<double> y;
  std::vector<uint8_t> mask;
};
DropoutResult dropout_forward(const Tensor& x, double p, uint64_t seed);

// --- linear: x [N,in], w [out,in] ---
std::vector<double> linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias);
struct LinearGrads {
  std::vector<double> dx, dw, dbias;
};
LinearGrads linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy);

// --- softmax cross-entropy with label smoothing, mean over N ---
struct SoftmaxCrossEntropy {
  double loss = 0;
  std::vector<double> probs;
};
SoftmaxCrossEntropy softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, double smoothing);
// dL/dlogits from the logits.
std::vector<double> softmax_cross_entropy_backward(const Tensor& logits, const Tensor& labels, double smoothing);

// --- one SGD step (SgdStep semantics) on double vectors; buf starts as zeros ---
void sgd_update(std::vector<double>& param, const std::vector<double>& grad, std::vector<double>& buf,
                const SgdStep& step);

}  // namespace convnet::testing::naive
