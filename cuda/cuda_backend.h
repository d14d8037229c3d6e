// The `cuda` backend: every op on our own kernels. Convolutions (and linear layers, as 1x1
// convolutions) use the v2 implicit-GEMM kernels of cuda/conv_kernels.h in fp32, and the v4
// tensor-core kernels of cuda/conv_tc_kernels.h in tf32 and bf16 (train.precision; `cuda_tf32` is
// this backend created in tf32); grouped convolutions with under 8 channels per group (depthwise)
// run on v0 / v2 in every precision (cuda_backend.cpp, fp32_version). In bf16 the fp32 operands are converted to bf16
// copies first and y, dx converted back (cuda/bf16_kernels.h): bf16 arithmetic, fp32 storage; pooling, activations and
// batch norm use cuda/pool_kernels.h, activation_kernels.h and batch_norm_kernels.h; copies,
// dropout, the loss and SGD come from GpuBackend. Results are deterministic (no float atomics,
// fixed reduction orders) and follow the cpu backend's semantics (core/cpu) exactly.
//
// Every op validates its tensors on the host before queueing work: defined, on this backend's
// device, the right dtype and shape; a mismatch throws convnet::Error naming the op and tensor
// ("conv2d_forward: y has shape [2, 4, 4, 8], expected [2, 4, 4, 16]").
#pragma once

#include <memory>

#include "cuda/conv_tc_kernels.h"
#include "cuda/gpu_backend.h"

namespace convnet::cuda {

class CudaBackend final : public GpuBackend {
 public:
  // Throws convnet::Error "the cuda backend needs a CUDA device: <reason>" when there is none, and
  // for tf32 or bf16 when the device has no tensor cores for them (compute capability below 8.0).
  explicit CudaBackend(int device_index = 0, Precision precision = Precision::fp32);

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p) override;
  // In tf32 and bf16 the moments come from v4's epilogue (fp32 sums per block tile, added in a
  // fixed order; mean and M2 from them in double); in fp32 from a pass over y.
  void conv2d_forward_with_moments(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                   const Conv2dParams& p, Tensor& mean, Tensor& m2) override;
  // The v4 epilogue's statistics make the fused pair cheaper: tf32 and bf16.
  bool fuses_conv_batch_norm() const override { return precision() != Precision::fp32; }
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

 protected:
  bool supports_precision(Precision p) const override { return p == Precision::fp32 || tensor_cores_; }

 private:
  // One convolution pass on this backend's kernels (v2 or v4 by precision()), for the conv and
  // linear layers alike. Each uses scratch() for its workspace and bf16 operand copies.
  // `stats` (v4 only): the output's per-channel sums as well.
  void run_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const ConvShape& s,
                   const ConvOutputStats& stats = {});
  void run_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const ConvShape& s);
  void run_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias, const ConvShape& s);
  ConvTcPlan tc_plan(const ConvShape& s, ConvPass pass) const;

  // scratch() carved into bf16 arrays of `counts` elements and a workspace, each 256-byte aligned.
  struct Bf16Scratch {
    uint16_t* part[3] = {};
    void* workspace = nullptr;
  };
  Bf16Scratch bf16_scratch(const int64_t (&counts)[3], size_t workspace_bytes);
  // A conv operand's values for v4 BF16: t's own data when it is bf16, else t rounded into `part`.
  const uint16_t* bf16_operand(const Tensor& t, uint16_t* part);
  // An fp32 kernel's y32 (or dx) stored as the precision stores it: in bf16, rounded to nearest
  // even in place, or into the bf16 tensor y (y32 then is a temporary); otherwise as it is.
  void store_result(const Tensor& y32, Tensor& y);

  int sm_count_ = 1;           // the tensor-core plans size their grids by it
  bool tensor_cores_ = false;  // TF32 and BF16 mma (compute capability 8.0 or newer)
};

// A CudaBackend on device `device_index`; throws convnet::Error when that device is unusable.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0, Precision precision = Precision::fp32);

}  // namespace convnet::cuda
