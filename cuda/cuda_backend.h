// The `cuda` backend: every op on our own kernels. Convolutions (and linear layers, as 1x1
// convolutions) use the v2 implicit-GEMM kernels of cuda/conv_kernels.h; pooling, activations and
// batch norm use cuda/pool_kernels.h, activation_kernels.h and batch_norm_kernels.h; copies,
// dropout, the loss and SGD come from GpuBackend. Results are deterministic (no float atomics,
// fixed reduction orders) and follow the cpu backend's semantics (core/cpu) exactly.
//
// Every op validates its tensors on the host before queueing work: defined, on this backend's
// device, the right dtype and shape; a mismatch throws convnet::Error naming the op and tensor
// ("conv2d_forward: y has shape [2, 4, 4, 8], expected [2, 4, 4, 16]").
#pragma once

#include <memory>

#include "cuda/gpu_backend.h"

namespace convnet::cuda {

class CudaBackend final : public GpuBackend {
 public:
  // Throws convnet::Error "the cuda backend needs a CUDA device: <reason>" when there is none.
  explicit CudaBackend(int device_index = 0);

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p) override;
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) override;
  void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                              const Conv2dParams& p) override;

  void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) override;
  void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) override;
  void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) override;
  void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) override;

  void relu_forward(const Tensor& x, Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void gelu_forward(const Tensor& x, Tensor& y) override;
  void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) override;

  // Throws convnet::Error when a channel has a single value (the unbiased variance is undefined).
  void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& saved_mean,
                                Tensor& saved_invstd, Tensor& running_mean, Tensor& running_var, float momentum,
                                float eps) override;
  void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float eps, Tensor& y) override;
  void batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                           const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) override;

  // Linear layers run as 1x1 convolutions over [N, 1, 1, in] (see cuda_backend.cpp).
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                       Tensor* dbias) override;
};

// A CudaBackend on device `device_index`; throws convnet::Error when that device is unusable.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

}  // namespace convnet::cuda
