// cuDNN's deprecation warnings are switched on here (an error under -Werror): calls into the
// legacy API belong in cudnn_legacy.cpp only.
#define CUDNN_WARN_DEPRECATED 1

#include "cuda/cudnn_backend.h"

#include <cstdint>
#include <limits>
#include <string>

#include "core/base/error.h"
#include "cuda/activation_kernels.h"
#include "cuda/bf16_kernels.h"
#include "cuda/check.h"
#include "cuda/cudnn_legacy.h"
#include "cuda/cudnn_pool_argmax.h"
#include "cuda/device.h"
#include "cuda/pool_kernels.h"

namespace convnet::cuda {

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

const float* fp(const Tensor& t) {
  return static_cast<const float*>(t.raw());
}
float* fp(Tensor& t) {
  return static_cast<float*>(t.raw());
}
const uint16_t* bf(const Tensor& t) {
  return static_cast<const uint16_t*>(t.raw());
}
uint16_t* bf(Tensor& t) {
  return static_cast<uint16_t*>(t.raw());
}

// cuDNN and cuBLAS index with 32-bit ints.
void fits_int(const OpChecks& check, const Tensor& t, const char* name) {
  CONVNET_CHECK(t.numel() <= kIntMax, "{}: {} {} has {} elements, more than the {} cuDNN and cuBLAS can index",
                check.op(), name, shape_str(t.shape()), t.numel(), kIntMax);
}

// The cuDNN problem of a validated convolution, whose extents must fit 32-bit ints.
ConvShape conv_shape(const OpChecks& check, const ConvGeometry& g) {
  for (const int64_t extent : {g.n, g.h, g.w, g.c, g.k, g.r, g.s})
    CONVNET_CHECK(extent >= 0 && extent <= kIntMax, "{}: extent {} of input {} / filters {} does not fit a 32-bit int",
                  check.op(), extent, shape_str({g.n, g.h, g.w, g.c}), shape_str({g.k, g.r, g.s, g.group_c()}));
  ConvShape s;
  s.n = static_cast<int>(g.n);
  s.h = static_cast<int>(g.h);
  s.w = static_cast<int>(g.w);
  s.c = static_cast<int>(g.c);
  s.k = static_cast<int>(g.k);
  s.r = static_cast<int>(g.r);
  s.s = static_cast<int>(g.s);
  s.p = static_cast<int>(g.p);
  s.q = static_cast<int>(g.q);
  s.params = g.params;
  return s;
}

Nhwc nhwc(const PoolGeometry& g, bool pooled) {
  return Nhwc{static_cast<int>(g.n), static_cast<int>(pooled ? g.p : g.h), static_cast<int>(pooled ? g.q : g.w),
              static_cast<int>(g.c)};
}

// cuDNN's 4-d view of a non-empty tensor whose last dimension is the channel: [N, H, W, C] as
// itself, any other rank as [rows, 1, 1, C] (the same memory).
Nhwc channel_view(const OpChecks& check, const Tensor& t, const char* name) {
  fits_int(check, t, name);
  CONVNET_CHECK(t.rank() >= 1 && t.dim(-1) > 0, "{}: {} has shape {}, expected [..., C] with C > 0", check.op(), name,
                shape_str(t.shape()));
  if (t.rank() == 4)
    return Nhwc{static_cast<int>(t.dim(0)), static_cast<int>(t.dim(1)), static_cast<int>(t.dim(2)),
                static_cast<int>(t.dim(3))};
  const int64_t channels = t.dim(-1);
  return Nhwc{static_cast<int>(t.numel() / channels), 1, 1, static_cast<int>(channels)};
}

// Any non-empty tensor as a cuDNN 4-d view for elementwise ops.
Nhwc elementwise_view(const OpChecks& check, const Tensor& t, const char* name) {
  if (t.rank() >= 1 && t.dim(-1) > 0) return channel_view(check, t, name);
  fits_int(check, t, name);
  return Nhwc{static_cast<int>(t.numel()), 1, 1, 1};
}

// A validated linear layer whose x, w and extents cuBLAS can index.
void check_linear_fits_int(const OpChecks& check, const LinearGeometry& g, const Tensor& x, const Tensor& w) {
  fits_int(check, x, "x");
  fits_int(check, w, "w");
  for (const int64_t extent : {g.n, g.in, g.out})
    CONVNET_CHECK(extent <= kIntMax, "{}: extent {} of x {} / w {} does not fit a 32-bit int", check.op(), extent,
                  shape_str(x.shape()), shape_str(w.shape()));
}

std::string backend_name(MathMode mode) {
  return mode == MathMode::tf32 ? "cudnn_tf32" : "cudnn";
}

// Constructs a handle (bound to the current device) on device `index`.
template <class Make>
auto on_device(int index, Make&& make) {
  const DeviceGuard guard(index);
  return make();
}

}  // namespace

CudnnBackend::CudnnBackend(int device_index, MathMode mode)
    : GpuBackend(backend_name(mode), device_index),
      mode_(mode),
      gemm_compute_(mode == MathMode::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F),
      cudnn_(on_device(this->device_index(), [this] { return CudnnHandle(stream()); })),
      cublas_(on_device(this->device_index(), [this, mode] { return CublasHandle(stream(), mode); })) {
  legacy_ = std::make_unique<CudnnLegacy>(cudnn_.get(), mode_, algo_policy_from_env(),
                                          [this](size_t bytes) { return scratch(bytes); });
  set_precision(mode == MathMode::tf32 ? Precision::tf32 : Precision::fp32);
}

CudnnBackend::~CudnnBackend() {
  // cuDNN and cuBLAS work may still be queued on stream(); let it finish before the handles go.
  if (cudaStreamSynchronize(stream()) != cudaSuccess) cudaGetLastError();
}

const AlgoPolicy& CudnnBackend::algo_policy() const {
  return legacy_->policy();
}

const ConvAlgoCache& CudnnBackend::conv_algo_cache() const {
  return legacy_->conv_algo_cache();
}

// --- convolution ---

void CudnnBackend::conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                  const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_forward");
  const ConvShape s = conv_shape(check, check.conv2d_forward(x, w, bias, y, p));
  fits_int(check, x, "x");
  fits_int(check, y, "y");
  if (s.n == 0) return;
  const OpScope in_op = scope(check);
  if (precision() == Precision::bf16) {
    // cuDNN stores y in bf16; the fp32 bias is added to those values and the sum rounded to bf16
    // again (the cpu reference rounds conv + bias once, see the header).
    // A bf16 y (bf16 activation storage) takes cuDNN's output as it is; with a bias, the rounded
    // sum is widened and rounded again, which changes nothing (it is a bf16 value).
    const Tensor xb = as_bf16(x), wb = as_bf16(w);
    const bool straight = y.dtype() == DType::bf16 && !bias;
    Tensor yb = straight ? y : empty(y.shape(), DType::bf16);
    legacy_->conv_forward(s, xb.raw(), wb.raw(), nullptr, yb.raw(), DType::bf16);
    if (straight) return;
    Tensor y32 = y.dtype() == DType::f32 ? y : empty(y.shape());
    launch_from_bf16_add_bias(bf(yb), bias ? fp(*bias) : nullptr, s.k, fp(y32), y.numel(), stream());
    if (y.dtype() == DType::bf16) launch_to_bf16(fp(y32), bf(y), y.numel(), stream());
    return;
  }
  legacy_->conv_forward(s, fp(x), fp(w), bias ? fp(*bias) : nullptr, fp(y));
}

void CudnnBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_backward_data");
  const ConvShape s = conv_shape(check, check.conv2d_backward_data(dy, w, dx, p));
  fits_int(check, dx, "dx");
  fits_int(check, dy, "dy");
  if (s.n == 0) return;
  const OpScope in_op = scope(check);
  if (precision() == Precision::bf16) {
    const Tensor dyb = as_bf16(dy), wb = as_bf16(w);
    Tensor dxb = empty(dx.shape(), DType::bf16);
    legacy_->conv_backward_data(s, dyb.raw(), wb.raw(), dxb.raw(), DType::bf16);
    launch_from_bf16(bf(dxb), fp(dx), dx.numel(), stream());
    return;
  }
  legacy_->conv_backward_data(s, fp(dy), fp(w), fp(dx));
}

void CudnnBackend::conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                          const Conv2dParams& p) {
  const OpChecks check = checks("conv2d_backward_filter");
  const ConvShape s = conv_shape(check, check.conv2d_backward_filter(x, dy, dw, dbias, p));
  fits_int(check, x, "x");
  fits_int(check, dy, "dy");
  const OpScope in_op = scope(check);
  if (s.n == 0) {  // sums over an empty batch
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  if (precision() == Precision::bf16) {
    // cuDNN's bf16 configuration stores dw in bf16 too (the cpu reference keeps it fp32, see the
    // header); dbias sums the bf16 dy, as the cpu reference does.
    const Tensor xb = as_bf16(x), dyb = as_bf16(dy);
    Tensor dwb = empty(dw.shape(), DType::bf16);
    legacy_->conv_backward_filter(s, xb.raw(), dyb.raw(), dwb.raw(), nullptr, DType::bf16);
    launch_from_bf16(bf(dwb), fp(dw), dw.numel(), stream());
    if (dbias) {
      Tensor dy_rounded = empty(dy.shape());
      launch_from_bf16(bf(dyb), fp(dy_rounded), dy.numel(), stream());
      legacy_->bias_gradient(Nhwc{s.n, s.p, s.q, s.k}, fp(dy_rounded), fp(*dbias));
    }
    return;
  }
  legacy_->conv_backward_filter(s, fp(x), fp(dy), fp(dw), dbias ? fp(*dbias) : nullptr);
}

// --- pooling ---

void CudnnBackend::max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const OpChecks check = checks("max_pool2d_forward");
  const PoolGeometry g = check.max_pool2d_forward(x, y, argmax, p);
  fits_int(check, x, "x");
  if (g.n == 0 || g.c == 0) return;
  const OpScope in_op = scope(check);
  legacy_->pool_forward(CudnnPoolMode::max, nhwc(g, false), nhwc(g, true), p, fp(x), fp(y));
  launch_max_pool2d_argmax(fp(x), static_cast<int32_t*>(argmax.raw()), g, stream());
}

void CudnnBackend::max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) {
  const OpChecks check = checks("max_pool2d_backward");
  const PoolGeometry g = check.max_pool2d_backward(dy, argmax, dx, p);
  fits_int(check, dx, "dx");
  if (g.n == 0 || g.c == 0) return;
  const OpScope in_op = scope(check);
  launch_max_pool2d_backward(fp(dy), static_cast<const int32_t*>(argmax.raw()), fp(dx), g, stream());
}

void CudnnBackend::avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) {
  const OpChecks check = checks("avg_pool2d_forward");
  const PoolGeometry g = check.avg_pool2d_forward(x, y, p);
  fits_int(check, x, "x");
  if (g.n == 0 || g.c == 0) return;
  const OpScope in_op = scope(check);
  legacy_->pool_forward(CudnnPoolMode::average, nhwc(g, false), nhwc(g, true), p, fp(x), fp(y));
}

void CudnnBackend::avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) {
  const OpChecks check = checks("avg_pool2d_backward");
  const PoolGeometry g = check.avg_pool2d_backward(dy, dx, p);
  fits_int(check, dx, "dx");
  if (g.n == 0 || g.c == 0) return;
  const OpScope in_op = scope(check);
  legacy_->avg_pool_backward(nhwc(g, false), nhwc(g, true), p, fp(dy), fp(dx));
}

// --- activations ---

// A bf16 y (bf16 precision): cuDNN's relu in f32, then rounded to nearest even, so the values are
// those of our fused kernel by construction rather than by sharing it.
void CudnnBackend::relu_forward(const Tensor& x, Tensor& y) {
  const OpChecks check = checks("relu_forward");
  check.relu_forward(x, y);
  if (x.numel() == 0) return;
  const Nhwc view = elementwise_view(check, x, "x");
  const OpScope in_op = scope(check);
  if (y.dtype() == DType::f32) return legacy_->relu_forward(view, fp(x), fp(y));
  Tensor y32 = empty(x.shape());
  legacy_->relu_forward(view, fp(x), fp(y32));
  launch_to_bf16(fp(y32), bf(y), y.numel(), stream());
}

void CudnnBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const OpChecks check = checks("relu_backward");
  check.relu_backward(y, dy, dx);
  if (y.numel() == 0) return;
  const Nhwc view = elementwise_view(check, y, "y");
  const OpScope in_op = scope(check);
  const Tensor y32 = as_f32(y);
  legacy_->relu_backward(view, fp(y32), fp(dy), fp(dx));
}

void CudnnBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const OpChecks check = checks("gelu_forward");
  check.activation_forward(x, y);
  const OpScope in_op = scope(check);
  launch_gelu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudnnBackend::gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const OpChecks check = checks("gelu_backward");
  check.activation_backward(x, "x", dy, dx);
  const OpScope in_op = scope(check);
  launch_gelu_backward(fp(x), fp(dy), fp(dx), x.numel(), stream());
}

// --- batch normalization ---

void CudnnBackend::batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                            Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                            Tensor& running_var, float momentum, float eps) {
  const OpChecks check = checks("batch_norm_forward_train");
  check.batch_norm_forward_train(x, gamma, beta, y, saved_mean, saved_invstd, running_mean, running_var, momentum, eps);
  const Nhwc view = channel_view(check, x, "x");
  const OpScope in_op = scope(check);
  const Tensor x32 = as_f32(x);  // a bf16 x (bf16 storage): cuDNN's batchnorm on its exact widening
  legacy_->batch_norm_forward_train(view, fp(x32), fp(gamma), fp(beta), fp(y), fp(saved_mean), fp(saved_invstd),
                                    fp(running_mean), fp(running_var), momentum, eps);
}

void CudnnBackend::batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                           const Tensor& running_mean, const Tensor& running_var, float eps,
                                           Tensor& y) {
  const OpChecks check = checks("batch_norm_forward_eval");
  check.batch_norm_forward_eval(x, gamma, beta, running_mean, running_var, eps, y);
  if (x.numel() == 0) return;
  const Nhwc view = channel_view(check, x, "x");
  const OpScope in_op = scope(check);
  const Tensor x32 = as_f32(x);
  legacy_->batch_norm_forward_eval(view, fp(x32), fp(gamma), fp(beta), fp(running_mean), fp(running_var), eps, fp(y));
}

void CudnnBackend::batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                       const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const OpChecks check = checks("batch_norm_backward");
  check.batch_norm_backward(x, dy, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta);
  const OpScope in_op = scope(check);
  if (x.numel() == 0) {  // sums over no rows
    fill(dgamma, 0.0f);
    fill(dbeta, 0.0f);
    return;
  }
  const Nhwc view = channel_view(check, x, "x");
  const Tensor x32 = as_f32(x);
  legacy_->batch_norm_backward(view, fp(x32), fp(dy), fp(gamma), fp(saved_mean), fp(saved_invstd), fp(dx), fp(dgamma),
                               fp(dbeta));
}

// --- linear ---
//
// cuBLAS is column-major: a row-major [rows, cols] matrix is the column-major [cols, rows] one,
// so each row-major product C = A B is computed as C^T = B^T A^T.

void CudnnBackend::gemm(bool transpose_a, bool transpose_b, int m, int n, int k, const float* a, int lda,
                        const float* b, int ldb, float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  CONVNET_CUBLAS_LAUNCH(cublasGemmEx(cublas_.get(), transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_32F, lda, b,
                                     CUDA_R_32F, ldb, &zero, c, CUDA_R_32F, ldc, gemm_compute_, CUBLAS_GEMM_DEFAULT));
}

void CudnnBackend::gemm_bf16(bool transpose_a, bool transpose_b, int m, int n, int k, const uint16_t* a, int lda,
                             const uint16_t* b, int ldb, float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  CONVNET_CUBLAS_LAUNCH(cublasGemmEx(
      cublas_.get(), transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, a,
      CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb, &zero, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudnnBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const OpChecks check = checks("linear_forward");
  const LinearGeometry g = check.linear_forward(x, w, bias, y);
  check_linear_fits_int(check, g, x, w);
  fits_int(check, y, "y");
  const auto [n, in, out] = g;
  if (y.numel() == 0) return;
  const OpScope in_op = scope(check);
  const int ni = static_cast<int>(n), ii = static_cast<int>(in), oi = static_cast<int>(out);
  if (precision() == Precision::bf16) {
    // bf16 operands, fp32 product; y = the bf16 nearest product + bias, as in the cpu reference.
    if (in == 0) {
      fill(y, 0.0f);
    } else {
      const Tensor xb = as_bf16(x), wb = as_bf16(w);
      gemm_bf16(true, false, oi, ni, ii, bf(wb), ii, bf(xb), ii, fp(y), oi);
    }
    launch_round_to_bf16(fp(y), bias ? fp(*bias) : nullptr, out, fp(y), y.numel(), stream());
    return;
  }
  if (in == 0) {
    fill(y, 0.0f);  // an empty sum
  } else {
    // y^T [out, N] = w [out, in] x^T [in, N]: column-major w^T is [in, out], x^T is [in, N].
    gemm(true, false, oi, ni, ii, fp(w), ii, fp(x), ii, fp(y), oi);
  }
  if (bias) legacy_->add_bias(Nhwc{ni, 1, 1, oi}, fp(*bias), fp(y));
}

void CudnnBackend::linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                                   Tensor* dbias) {
  const OpChecks check = checks("linear_backward");
  const LinearGeometry g = check.linear_backward(x, w, dy, dx, dw, dbias);
  check_linear_fits_int(check, g, x, w);
  fits_int(check, dy, "dy");
  const auto [n, in, out] = g;
  const OpScope in_op = scope(check);
  const int ni = static_cast<int>(n), ii = static_cast<int>(in), oi = static_cast<int>(out);
  if (precision() == Precision::bf16) {
    linear_backward_bf16(x, w, dy, dx, dw, dbias, ni, ii, oi);
    return;
  }
  if (dx && dx->numel() > 0) {
    if (out == 0)
      fill(*dx, 0.0f);
    else  // dx^T [in, N] = w^T [in, out] dy^T [out, N]
      gemm(false, false, ii, ni, oi, fp(w), ii, fp(dy), oi, fp(*dx), ii);
  }
  if (dw.numel() > 0) {
    if (n == 0)
      fill(dw, 0.0f);
    else  // dw^T [in, out] = x^T [in, N] dy [N, out]
      gemm(false, true, ii, oi, ni, fp(x), ii, fp(dy), oi, fp(dw), ii);
  }
  if (dbias && out > 0) {
    if (n == 0)
      fill(*dbias, 0.0f);
    else
      legacy_->bias_gradient(Nhwc{ni, 1, 1, oi}, fp(dy), fp(*dbias));
  }
}

// linear_backward in bf16: x, w and dy as bf16 operands, fp32 products (cublasGemmEx, FP32 compute);
// dx rounded to bf16, dw fp32, dbias summed over the bf16 dy: the cpu reference's roundings.
void CudnnBackend::linear_backward_bf16(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                                        Tensor* dbias, int n, int in, int out) {
  const bool want_dx = dx && dx->numel() > 0, want_dw = dw.numel() > 0, want_dbias = dbias && out > 0;
  if (n == 0) {  // empty sums; dx is empty too
    if (want_dw) fill(dw, 0.0f);
    if (want_dbias) fill(*dbias, 0.0f);
    return;
  }
  if (out == 0) {  // dx sums over no outputs; dw and dbias are empty
    if (want_dx) fill(*dx, 0.0f);
    return;
  }
  const Tensor dyb = as_bf16(dy);
  if (want_dx) {  // dx^T [in, N] = w^T [in, out] dy^T [out, N]
    const Tensor wb = as_bf16(w);
    gemm_bf16(false, false, in, n, out, bf(wb), in, bf(dyb), out, fp(*dx), in);
    launch_round_to_bf16(fp(*dx), nullptr, 1, fp(*dx), dx->numel(), stream());
  }
  if (want_dw) {  // dw^T [in, out] = x^T [in, N] dy [N, out]
    const Tensor xb = as_bf16(x);
    gemm_bf16(false, true, in, out, n, bf(xb), in, bf(dyb), out, fp(dw), in);
  }
  if (want_dbias) {
    Tensor dy_rounded = empty(dy.shape());
    launch_from_bf16(bf(dyb), fp(dy_rounded), dy.numel(), stream());
    legacy_->bias_gradient(Nhwc{n, 1, 1, out}, fp(dy_rounded), fp(*dbias));
  }
}

std::unique_ptr<Backend> make_cudnn_backend(int device_index, MathMode mode) {
  return std::make_unique<CudnnBackend>(device_index, mode);
}

}  // namespace convnet::cuda
