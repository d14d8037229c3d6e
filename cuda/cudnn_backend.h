// The `cudnn` and `cudnn_tf32` backends: NVIDIA's libraries as the reference our own kernels are
// measured against, with the cpu backend's semantics (core/base/backend.h).
//
// What runs where:
// - Convolutions: cuDNN's legacy API on NHWC tensors and KRSC (NHWC-format) filters, grouped
//   ones through the descriptor's group count (cudnnSetConvolutionGroupCount), algorithms
//   chosen and cached as cudnn_algorithms.h describes; bias by cudnnAddTensor, its gradient by
//   cudnnConvolutionBackwardBias. Workspaces come from GpuBackend::scratch (grow-only; at most
//   kDefaultCudnnWorkspaceLimit per algorithm; the timed search grows it to the largest one tried).
// - Linear: cuBLAS GEMMs (cublasGemmEx, row-major through the transposed column-major product)
//   with an explicit compute type; bias and its gradient through the same cuDNN calls as
//   convolutions, on [N, 1, 1, out].
// - Max pooling: cuDNN computes y; the argmax the Backend contract needs comes from our kernel
//   (cudnn_pool_argmax.h) and the backward is our deterministic gather (pool_kernels.h), because
//   cuDNN's max-pool backward needs x and y and is documented as non-deterministic.
// - Average pooling, ReLU and batch normalization (spatial mode): cuDNN.
// - GELU: our kernels (activation_kernels.h); cuDNN's legacy API has no GELU mode.
// - Copies, fills, dropout, softmax cross-entropy and SGD: GpuBackend.
//
// Math modes: `cudnn` is strict FP32 (convolution descriptors CUDNN_FMA_MATH and only FMA
// algorithms accepted; cuBLAS in CUBLAS_DEFAULT_MATH with CUBLAS_COMPUTE_32F, which never uses
// TF32 since CUDA 11 unless asked: the baseline PyTorch calls fp32 with allow_tf32 off.
// CUBLAS_PEDANTIC_MATH is not used: it is meant for numerical studies and may give up fast FP32
// paths, which would make the baseline slower than what users get). `cudnn_tf32` lets
// convolutions use TF32 tensor cores (CUDNN_DEFAULT_MATH) and runs GEMMs with
// CUBLAS_COMPUTE_32F_FAST_TF32 (handle in CUBLAS_TF32_TENSOR_OP_MATH). Bias, pooling, activations
// and batch norm are FP32 in both. NVIDIA_TF32_OVERRIDE=0 switches TF32 off process-wide.
//
// train.precision bf16 (the `cudnn` backend; `cudnn_tf32` stays tf32 only): convolutions run on
// bf16 copies of x, w and dy (GpuBackend::as_bf16, NHWC CUDNN_DATA_BFLOAT16 tensors and filters,
// FP32 compute type, CUDNN_TENSOR_OP_MATH; algorithms cached per data type), their bf16 y, dx and
// dw converted to the fp32 tensors. Linear layers multiply bf16 copies with cublasGemmEx
// (CUDA_R_16BF inputs, CUBLAS_COMPUTE_32F, fp32 output) and round y, dx to bf16. Like the cpu
// reference (core/base/precision.h): operands rounded to nearest even, y and dx bf16 values,
// dbias summed over the bf16 dy, fp32 accumulation; every other op fp32. Two differences, because
// cuDNN's bf16 configuration (PSEUDO_BFLOAT16_CONFIG) has bf16 outputs only: a convolution's y is
// rounded before the fp32 bias is added and the sum rounded again (the reference rounds conv +
// bias once: at most one bf16 ulp apart), and a convolution's dw is rounded to bf16 (the
// reference's is fp32: a relative difference of at most 2^-9 per element). Linear layers match
// the reference's roundings exactly (only the summation order differs).
//
// Determinism: non-deterministic convolution algorithms are rejected unless CONVNET_DETERMINISTIC=0;
// CONVNET_CUDNN_FIND=1 times the algorithms instead of using cuDNN's heuristics. Both are read
// when the backend is created.
//
// Every op validates its tensors on the host first (defined, on this device, dtype, shape; cuDNN
// extents within 32-bit int) and throws convnet::Error naming the op and the tensor.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <memory>

#include "cuda/cudnn_algorithms.h"
#include "cuda/gpu_backend.h"
#include "cuda/handles.h"

namespace convnet::cuda {

class CudnnLegacy;

class CudnnBackend final : public GpuBackend {
 public:
  // Named "cudnn" (fp32) or "cudnn_tf32". Throws convnet::Error when device `device_index` is
  // unusable, ConfigError when CONVNET_CUDNN_FIND or CONVNET_DETERMINISTIC is not 0 or 1.
  CudnnBackend(int device_index, MathMode mode);
  ~CudnnBackend() override;

  MathMode math_mode() const { return mode_; }
  const AlgoPolicy& algo_policy() const;
  // The convolution algorithms chosen so far.
  const ConvAlgoCache& conv_algo_cache() const;

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

  void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                       Tensor* dbias) override;

 protected:
  // The math mode is fixed at construction: cudnn computes in fp32 or bf16, cudnn_tf32 in tf32.
  bool supports_precision(Precision p) const override { return cudnn_supports_precision(mode_, p); }

 private:
  // C (m x n, column-major, leading dimension ldc) = op(A) op(B) through cublasGemmEx in this
  // backend's compute type; all extents > 0.
  void gemm(bool transpose_a, bool transpose_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
            float* c, int ldc);
  // The same with bf16 A and B, fp32 C, CUBLAS_COMPUTE_32F (train.precision bf16).
  void gemm_bf16(bool transpose_a, bool transpose_b, int m, int n, int k, const uint16_t* a, int lda, const uint16_t* b,
                 int ldb, float* c, int ldc);
  void linear_backward_bf16(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* dbias,
                            int n, int in, int out);

  MathMode mode_;
  cublasComputeType_t gemm_compute_;
  CudnnHandle cudnn_;
  CublasHandle cublas_;
  std::unique_ptr<CudnnLegacy> legacy_;
};

// A CudnnBackend on device `device_index` in math mode `mode`; throws as its constructor does.
std::unique_ptr<Backend> make_cudnn_backend(int device_index, MathMode mode);

}  // namespace convnet::cuda
