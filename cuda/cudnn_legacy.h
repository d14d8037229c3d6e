// The cudnn backend's calls into cuDNN's legacy, descriptor-based API (convolution, pooling,
// activation, batch normalization, tensor ops). cuDNN 9 marks that API deprecated; cudnn_legacy.cpp
// is the one translation unit that uses it, so this header exposes no deprecated type.
//
// Every tensor is described to cuDNN as a fully packed NHWC float tensor (an `Nhwc` view), filters
// as NHWC filters (our KRSC); convolutions also take bf16 data (x, w, y, dy, dx, dw all bf16,
// FP32 compute type, tensor-core math: cuDNN's PSEUDO_BFLOAT16_CONFIG), for train.precision bf16. Calls are queued on
// the handle's stream; pointers are device pointers; outputs are overwritten (cuDNN's beta = 0, so they are never
// read); every cuDNN status is checked and a failure throws convnet::Error. Not thread-safe: one thread at a time, like
// the handle it wraps.
#pragma once

#include <cudnn.h>

#include <functional>
#include <memory>
#include <vector>

#include "core/base/backend.h"
#include "cuda/conv_kernels.h"
#include "cuda/cudnn_algorithms.h"
#include "cuda/handles.h"

namespace convnet::cuda {

// A packed NHWC tensor as cuDNN sees it: extents n, h, w, c with c innermost. Other ranks are
// viewed as [rows, 1, 1, C]. Each extent >= 1 and the product fits cuDNN's 32-bit int.
struct Nhwc {
  int n = 1, h = 1, w = 1, c = 1;
};

enum class CudnnPoolMode { max, average };  // average counts padding (count_include_pad)

class CudnnLegacy {
 public:
  // Device scratch of at least `bytes`, valid until the next request (GpuBackend::scratch).
  using WorkspaceFn = std::function<void*(size_t bytes)>;

  // `handle` must outlive this object. Convolutions run in `mode` (cudnn_math_type) and pick
  // algorithms by `policy` (cudnn_algorithms.h). Throws convnet::Error when a descriptor cannot
  // be created.
  CudnnLegacy(cudnnHandle_t handle, MathMode mode, AlgoPolicy policy, WorkspaceFn workspace);
  ~CudnnLegacy();
  CudnnLegacy(const CudnnLegacy&) = delete;
  CudnnLegacy& operator=(const CudnnLegacy&) = delete;

  // --- convolution: x [n, h, w, c], w [k, r, s, c / groups], y [n, p, q, k] (Backend::conv2d_*
  // semantics, groups from shape.params) ---
  // The shape's extents must all be >= 1 (the caller handles empty batches) and p, q must be the
  // output extents; cuDNN's own output size is checked against them. Every operand and output is of
  // `dtype` (f32, or bf16 in cuDNN's PSEUDO_BFLOAT16_CONFIG); bias and dbias (f32) only with f32.
  void conv_forward(const ConvShape& shape, const void* x, const void* w, const float* bias, void* y,
                    DType dtype = DType::f32);
  void conv_backward_data(const ConvShape& shape, const void* dy, const void* w, void* dx, DType dtype = DType::f32);
  // dbias may be null.
  void conv_backward_filter(const ConvShape& shape, const void* x, const void* dy, void* dw, float* dbias,
                            DType dtype = DType::f32);
  // The algorithm `pass` runs for `shape`: chosen (heuristics or timing, which then runs the pass
  // on the given buffers, overwriting the output) and cached on first use. `input`, `filter` and
  // `output` are the pass's operands: forward (x, w, y), backward-data (dy, w, dx),
  // backward-filter (x, dy, dw); they are only touched when timing.
  // The cache key includes `dtype`, so f32 and bf16 choices for one problem are kept apart.
  AlgoChoice conv_algorithm(ConvPass pass, const ConvShape& shape, const void* input, const void* filter, void* output,
                            DType dtype = DType::f32);
  const ConvAlgoCache& conv_algo_cache() const { return cache_; }
  const AlgoPolicy& policy() const { return policy_; }

  // --- per-channel bias (channels = view.c) ---
  void add_bias(const Nhwc& view, const float* bias, float* y);         // y += bias
  void bias_gradient(const Nhwc& view, const float* dy, float* dbias);  // dbias = sum of dy per channel

  // --- pooling: x viewed as `x`, y as `y` = [n, p, q, c] ---
  void pool_forward(CudnnPoolMode mode, const Nhwc& x, const Nhwc& y, const Pool2dParams& params, const float* xp,
                    float* yp);
  // Average pooling's adjoint: dx from dy (needs neither x nor y).
  void avg_pool_backward(const Nhwc& x, const Nhwc& y, const Pool2dParams& params, const float* dy, float* dx);

  // --- ReLU (NaN maps to 0, like the cpu backend); dx may alias dy ---
  void relu_forward(const Nhwc& view, const float* x, float* y);
  void relu_backward(const Nhwc& view, const float* y, const float* dy, float* dx);

  // --- batch normalization per channel (view.c) over the n * h * w rows (spatial mode) ---
  // Backend::batch_norm_* semantics; momentum is cuDNN's exponentialAverageFactor.
  void batch_norm_forward_train(const Nhwc& view, const float* x, const float* gamma, const float* beta, float* y,
                                float* saved_mean, float* saved_invstd, float* running_mean, float* running_var,
                                double momentum, double eps);
  void batch_norm_forward_eval(const Nhwc& view, const float* x, const float* gamma, const float* beta,
                               const float* running_mean, const float* running_var, double eps, float* y);
  void batch_norm_backward(const Nhwc& view, const float* x, const float* dy, const float* gamma,
                           const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma, float* dbeta);

 private:
  struct Descriptors;  // the deprecated descriptor types stay in cudnn_legacy.cpp

  void set_conv(const ConvShape& shape, DType dtype);
  cudnnMathType_t conv_math_type(DType dtype) const;  // the descriptor's math type before a choice
  std::vector<AlgoCandidate> ranked_candidates(ConvPass pass, const void* input, const void* filter, void* output);
  size_t workspace_size(ConvPass pass, int algo);

  cudnnHandle_t handle_;
  MathMode mode_;
  AlgoPolicy policy_;
  WorkspaceFn workspace_;
  std::unique_ptr<Descriptors> d_;
  ConvAlgoCache cache_;
};

}  // namespace convnet::cuda
