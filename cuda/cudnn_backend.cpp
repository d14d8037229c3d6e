// cuDNN's deprecation warnings are switched on here (an error under -Werror): calls into the
// legacy API belong in cudnn_legacy.cpp only.
#define CUDNN_WARN_DEPRECATED 1

#include "cuda/cudnn_backend.h"

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "core/base/error.h"
#include "cuda/activation_kernels.h"
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

// Argument checks with the cpu backend's messages (core/cpu/checks.h), for device tensors.
struct Checks {
  const char* op;
  Device device;
  std::string backend;

  void tensor(const Tensor& t, const char* name, DType dtype = DType::f32) const {
    CONVNET_CHECK(t.defined(), "{}: {} is undefined", op, name);
    CONVNET_CHECK(t.device() == device, "{}: {} lives on {}, the {} backend needs tensors on {}", op, name,
                  t.device().str(), backend, device.str());
    CONVNET_CHECK(t.dtype() == dtype, "{}: {} has dtype {}, expected {}", op, name, dtype_name(t.dtype()),
                  dtype_name(dtype));
  }
  void shape(const Tensor& t, const Shape& expected, const char* name, DType dtype = DType::f32) const {
    tensor(t, name, dtype);
    CONVNET_CHECK(t.shape() == expected, "{}: {} has shape {}, expected {}", op, name, shape_str(t.shape()),
                  shape_str(expected));
  }
  void rank(const Tensor& t, int expected, const char* name, DType dtype = DType::f32) const {
    tensor(t, name, dtype);
    CONVNET_CHECK(t.rank() == expected, "{}: {} has shape {}, expected rank {}", op, name, shape_str(t.shape()),
                  expected);
  }
  // cuDNN and cuBLAS index with 32-bit ints.
  void fits_int(const Tensor& t, const char* name) const {
    CONVNET_CHECK(t.numel() <= kIntMax, "{}: {} {} has {} elements, more than the {} cuDNN and cuBLAS can index", op,
                  name, shape_str(t.shape()), t.numel(), kIntMax);
  }
};

Checks checks(const char* op, const Backend& backend) {
  return Checks{op, backend.device(), backend.name()};
}

// The convolution problem of x [N, H, W, C] and w [K, R, S, C] (the cpu backend's checks).
ConvShape conv_shape(const Shape& x, const Shape& w, const Conv2dParams& p, const char* op) {
  CONVNET_CHECK(x.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x));
  CONVNET_CHECK(w.size() == 4, "{}: filters have shape {}, expected rank 4 [K, R, S, C]", op, shape_str(w));
  CONVNET_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, p.stride_h, p.stride_w);
  CONVNET_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "{}: dilation {}x{} must be >= 1", op, p.dilation_h,
                p.dilation_w);
  CONVNET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "{}: padding {}x{} must be >= 0", op, p.pad_h, p.pad_w);
  CONVNET_CHECK(w[3] == x[3], "{}: filters {} have {} input channels, the input {} has {}", op, shape_str(w), w[3],
                shape_str(x), x[3]);
  CONVNET_CHECK(w[0] > 0 && w[1] > 0 && w[2] > 0 && w[3] > 0, "{}: empty filters {}", op, shape_str(w));
  for (const int64_t extent : {x[0], x[1], x[2], x[3], w[0], w[1], w[2]})
    CONVNET_CHECK(extent >= 0 && extent <= kIntMax, "{}: extent {} of input {} / filters {} does not fit a 32-bit int",
                  op, extent, shape_str(x), shape_str(w));
  const int64_t p_out = conv_output_size(x[1], w[1], p.stride_h, p.pad_h, p.dilation_h);
  const int64_t q_out = conv_output_size(x[2], w[2], p.stride_w, p.pad_w, p.dilation_w);
  CONVNET_CHECK(p_out > 0 && q_out > 0,
                "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} kernel (dilation {}x{})", op, x[1], x[2],
                p.pad_h, p.pad_w, w[1], w[2], p.dilation_h, p.dilation_w);
  ConvShape s;
  s.n = static_cast<int>(x[0]);
  s.h = static_cast<int>(x[1]);
  s.w = static_cast<int>(x[2]);
  s.c = static_cast<int>(x[3]);
  s.k = static_cast<int>(w[0]);
  s.r = static_cast<int>(w[1]);
  s.s = static_cast<int>(w[2]);
  s.p = static_cast<int>(p_out);
  s.q = static_cast<int>(q_out);
  s.params = p;
  return s;
}

// The pooling problem of x [N, H, W, C] (the cpu backend's checks).
PoolShape pool_shape(const Shape& x, const Pool2dParams& pr, const char* op) {
  CONVNET_CHECK(x.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x));
  CONVNET_CHECK(pr.kernel_h >= 1 && pr.kernel_w >= 1, "{}: kernel {}x{} must be >= 1", op, pr.kernel_h, pr.kernel_w);
  CONVNET_CHECK(pr.stride_h >= 1 && pr.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, pr.stride_h, pr.stride_w);
  // pad < kernel guarantees every window holds at least one real input element.
  CONVNET_CHECK(pr.pad_h >= 0 && pr.pad_w >= 0 && pr.pad_h < pr.kernel_h && pr.pad_w < pr.kernel_w,
                "{}: padding {}x{} must be >= 0 and smaller than the {}x{} kernel", op, pr.pad_h, pr.pad_w, pr.kernel_h,
                pr.kernel_w);
  PoolShape g;
  g.n = x[0];
  g.h = x[1];
  g.w = x[2];
  g.c = x[3];
  g.params = pr;
  g.p = conv_output_size(g.h, pr.kernel_h, pr.stride_h, pr.pad_h);
  g.q = conv_output_size(g.w, pr.kernel_w, pr.stride_w, pr.pad_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} window", op, g.h, g.w,
                pr.pad_h, pr.pad_w, pr.kernel_h, pr.kernel_w);
  return g;
}

// Pool geometry after checking an op's tensors: `image` (x or dx) and `pooled` (y or dy, [N, P, Q, C])
// and, when given, the i32 argmax of the pooled shape.
PoolShape checked_pool(const Checks& ck, const Pool2dParams& pr, const Tensor& image, const char* image_name,
                       const Tensor& pooled, const char* pooled_name, const Tensor* argmax = nullptr) {
  ck.tensor(image, image_name);
  const PoolShape g = pool_shape(image.shape(), pr, ck.op);
  ck.shape(pooled, {g.n, g.p, g.q, g.c}, pooled_name);
  if (argmax) ck.shape(*argmax, {g.n, g.p, g.q, g.c}, "argmax", DType::i32);
  ck.fits_int(image, image_name);
  return g;
}

Nhwc nhwc(const PoolShape& g, bool pooled) {
  return Nhwc{static_cast<int>(g.n), static_cast<int>(pooled ? g.p : g.h), static_cast<int>(pooled ? g.q : g.w),
              static_cast<int>(g.c)};
}

// cuDNN's 4-d view of a non-empty tensor whose last dimension is the channel: [N, H, W, C] as
// itself, any other rank as [rows, 1, 1, C] (the same memory).
Nhwc channel_view(const Checks& ck, const Tensor& t, const char* name) {
  ck.fits_int(t, name);
  CONVNET_CHECK(t.rank() >= 1 && t.dim(-1) > 0, "{}: {} has shape {}, expected [..., C] with C > 0", ck.op, name,
                shape_str(t.shape()));
  if (t.rank() == 4)
    return Nhwc{static_cast<int>(t.dim(0)), static_cast<int>(t.dim(1)), static_cast<int>(t.dim(2)),
                static_cast<int>(t.dim(3))};
  const int64_t channels = t.dim(-1);
  return Nhwc{static_cast<int>(t.numel() / channels), 1, 1, static_cast<int>(channels)};
}

// Any non-empty tensor as a cuDNN 4-d view for elementwise ops.
Nhwc elementwise_view(const Checks& ck, const Tensor& t, const char* name) {
  if (t.rank() >= 1 && t.dim(-1) > 0) return channel_view(ck, t, name);
  ck.fits_int(t, name);
  return Nhwc{static_cast<int>(t.numel()), 1, 1, 1};
}

// The extents of x [N, in] and w [out, in] after checking both.
struct LinearDims {
  int64_t n, in, out;
};
LinearDims linear_dims(const Checks& ck, const Tensor& x, const Tensor& w) {
  ck.rank(x, 2, "x");
  ck.rank(w, 2, "w");
  const LinearDims d{x.dim(0), x.dim(1), w.dim(0)};
  ck.shape(w, {d.out, d.in}, "w");
  ck.fits_int(x, "x");
  ck.fits_int(w, "w");
  for (const int64_t extent : {d.n, d.in, d.out})
    CONVNET_CHECK(extent <= kIntMax, "{}: extent {} of x {} / w {} does not fit a 32-bit int", ck.op, extent,
                  shape_str(x.shape()), shape_str(w.shape()));
  return d;
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
  const Checks ck = checks("conv2d_forward", *this);
  ck.tensor(x, "x");
  ck.tensor(w, "w");
  const ConvShape s = conv_shape(x.shape(), w.shape(), p, ck.op);
  ck.shape(y, {s.n, s.p, s.q, s.k}, "y");
  if (bias) ck.shape(*bias, {s.k}, "bias");
  ck.fits_int(x, "x");
  ck.fits_int(y, "y");
  if (s.n == 0) return;
  const DeviceGuard guard(device_index());
  legacy_->conv_forward(s, fp(x), fp(w), bias ? fp(*bias) : nullptr, fp(y));
}

void CudnnBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const Checks ck = checks("conv2d_backward_data", *this);
  ck.tensor(dx, "dx");
  ck.tensor(w, "w");
  const ConvShape s = conv_shape(dx.shape(), w.shape(), p, ck.op);
  ck.shape(dy, {s.n, s.p, s.q, s.k}, "dy");
  ck.fits_int(dx, "dx");
  ck.fits_int(dy, "dy");
  if (s.n == 0) return;
  const DeviceGuard guard(device_index());
  legacy_->conv_backward_data(s, fp(dy), fp(w), fp(dx));
}

void CudnnBackend::conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                          const Conv2dParams& p) {
  const Checks ck = checks("conv2d_backward_filter", *this);
  ck.tensor(x, "x");
  ck.tensor(dw, "dw");
  const ConvShape s = conv_shape(x.shape(), dw.shape(), p, ck.op);
  ck.shape(dy, {s.n, s.p, s.q, s.k}, "dy");
  if (dbias) ck.shape(*dbias, {s.k}, "dbias");
  ck.fits_int(x, "x");
  ck.fits_int(dy, "dy");
  const DeviceGuard guard(device_index());
  if (s.n == 0) {  // sums over an empty batch
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  legacy_->conv_backward_filter(s, fp(x), fp(dy), fp(dw), dbias ? fp(*dbias) : nullptr);
}

// --- pooling ---

void CudnnBackend::max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const Checks ck = checks("max_pool2d_forward", *this);
  const PoolShape g = checked_pool(ck, p, x, "x", y, "y", &argmax);
  if (g.n == 0 || g.c == 0) return;
  const DeviceGuard guard(device_index());
  legacy_->pool_forward(CudnnPoolMode::max, nhwc(g, false), nhwc(g, true), p, fp(x), fp(y));
  launch_max_pool2d_argmax(fp(x), static_cast<int32_t*>(argmax.raw()), g, stream());
}

void CudnnBackend::max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) {
  const Checks ck = checks("max_pool2d_backward", *this);
  const PoolShape g = checked_pool(ck, p, dx, "dx", dy, "dy", &argmax);
  if (g.n == 0 || g.c == 0) return;
  const DeviceGuard guard(device_index());
  launch_max_pool2d_backward(fp(dy), static_cast<const int32_t*>(argmax.raw()), fp(dx), g, stream());
}

void CudnnBackend::avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) {
  const Checks ck = checks("avg_pool2d_forward", *this);
  const PoolShape g = checked_pool(ck, p, x, "x", y, "y");
  if (g.n == 0 || g.c == 0) return;
  const DeviceGuard guard(device_index());
  legacy_->pool_forward(CudnnPoolMode::average, nhwc(g, false), nhwc(g, true), p, fp(x), fp(y));
}

void CudnnBackend::avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) {
  const Checks ck = checks("avg_pool2d_backward", *this);
  const PoolShape g = checked_pool(ck, p, dx, "dx", dy, "dy");
  if (g.n == 0 || g.c == 0) return;
  const DeviceGuard guard(device_index());
  legacy_->avg_pool_backward(nhwc(g, false), nhwc(g, true), p, fp(dy), fp(dx));
}

// --- activations ---

void CudnnBackend::relu_forward(const Tensor& x, Tensor& y) {
  const Checks ck = checks("relu_forward", *this);
  ck.tensor(x, "x");
  ck.shape(y, x.shape(), "y");
  if (x.numel() == 0) return;
  const Nhwc view = elementwise_view(ck, x, "x");
  const DeviceGuard guard(device_index());
  legacy_->relu_forward(view, fp(x), fp(y));
}

void CudnnBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const Checks ck = checks("relu_backward", *this);
  ck.tensor(y, "y");
  ck.shape(dy, y.shape(), "dy");
  ck.shape(dx, y.shape(), "dx");
  if (y.numel() == 0) return;
  const Nhwc view = elementwise_view(ck, y, "y");
  const DeviceGuard guard(device_index());
  legacy_->relu_backward(view, fp(y), fp(dy), fp(dx));
}

void CudnnBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const Checks ck = checks("gelu_forward", *this);
  ck.tensor(x, "x");
  ck.shape(y, x.shape(), "y");
  const DeviceGuard guard(device_index());
  launch_gelu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudnnBackend::gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const Checks ck = checks("gelu_backward", *this);
  ck.tensor(x, "x");
  ck.shape(dy, x.shape(), "dy");
  ck.shape(dx, x.shape(), "dx");
  const DeviceGuard guard(device_index());
  launch_gelu_backward(fp(x), fp(dy), fp(dx), x.numel(), stream());
}

// --- batch normalization ---

void CudnnBackend::batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                            Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                            Tensor& running_var, float momentum, float eps) {
  const Checks ck = checks("batch_norm_forward_train", *this);
  ck.tensor(x, "x");
  const Nhwc view = channel_view(ck, x, "x");
  const Shape cshape{view.c};
  ck.shape(gamma, cshape, "gamma");
  ck.shape(beta, cshape, "beta");
  ck.shape(y, x.shape(), "y");
  ck.shape(saved_mean, cshape, "saved_mean");
  ck.shape(saved_invstd, cshape, "saved_invstd");
  ck.shape(running_mean, cshape, "running_mean");
  ck.shape(running_var, cshape, "running_var");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", ck.op, eps);
  CONVNET_CHECK(momentum >= 0.0f && momentum <= 1.0f, "{}: momentum {} must lie in [0, 1]", ck.op, momentum);
  if (x.numel() / view.c < 2)
    throw Error(
        fmt::format("batch_norm: training needs more than one value per channel, got input {}", shape_str(x.shape())));
  const DeviceGuard guard(device_index());
  legacy_->batch_norm_forward_train(view, fp(x), fp(gamma), fp(beta), fp(y), fp(saved_mean), fp(saved_invstd),
                                    fp(running_mean), fp(running_var), momentum, eps);
}

void CudnnBackend::batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                           const Tensor& running_mean, const Tensor& running_var, float eps,
                                           Tensor& y) {
  const Checks ck = checks("batch_norm_forward_eval", *this);
  ck.tensor(x, "x");
  CONVNET_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "{}: x has shape {}, expected [..., C] with C > 0", ck.op,
                shape_str(x.shape()));
  const Shape cshape{x.dim(-1)};
  ck.shape(gamma, cshape, "gamma");
  ck.shape(beta, cshape, "beta");
  ck.shape(running_mean, cshape, "running_mean");
  ck.shape(running_var, cshape, "running_var");
  ck.shape(y, x.shape(), "y");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", ck.op, eps);
  if (x.numel() == 0) return;
  const Nhwc view = channel_view(ck, x, "x");
  const DeviceGuard guard(device_index());
  legacy_->batch_norm_forward_eval(view, fp(x), fp(gamma), fp(beta), fp(running_mean), fp(running_var), eps, fp(y));
}

void CudnnBackend::batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                       const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const Checks ck = checks("batch_norm_backward", *this);
  ck.tensor(x, "x");
  CONVNET_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "{}: x has shape {}, expected [..., C] with C > 0", ck.op,
                shape_str(x.shape()));
  const Shape cshape{x.dim(-1)};
  ck.shape(dy, x.shape(), "dy");
  ck.shape(gamma, cshape, "gamma");
  ck.shape(saved_mean, cshape, "saved_mean");
  ck.shape(saved_invstd, cshape, "saved_invstd");
  ck.shape(dx, x.shape(), "dx");
  ck.shape(dgamma, cshape, "dgamma");
  ck.shape(dbeta, cshape, "dbeta");
  const DeviceGuard guard(device_index());
  if (x.numel() == 0) {  // sums over no rows
    fill(dgamma, 0.0f);
    fill(dbeta, 0.0f);
    return;
  }
  const Nhwc view = channel_view(ck, x, "x");
  legacy_->batch_norm_backward(view, fp(x), fp(dy), fp(gamma), fp(saved_mean), fp(saved_invstd), fp(dx), fp(dgamma),
                               fp(dbeta));
}

// --- linear ---
//
// cuBLAS is column-major: a row-major [rows, cols] matrix is the column-major [cols, rows] one,
// so each row-major product C = A B is computed as C^T = B^T A^T.

void CudnnBackend::gemm(bool transpose_a, bool transpose_b, int m, int n, int k, const float* a, int lda,
                        const float* b, int ldb, float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  CONVNET_CUBLAS_CHECK(cublasGemmEx(cublas_.get(), transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_32F, lda, b,
                                    CUDA_R_32F, ldb, &zero, c, CUDA_R_32F, ldc, gemm_compute_, CUBLAS_GEMM_DEFAULT));
}

void CudnnBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const Checks ck = checks("linear_forward", *this);
  const auto [n, in, out] = linear_dims(ck, x, w);
  ck.shape(y, {n, out}, "y");
  if (bias) ck.shape(*bias, {out}, "bias");
  ck.fits_int(y, "y");
  if (y.numel() == 0) return;
  const DeviceGuard guard(device_index());
  const int ni = static_cast<int>(n), ii = static_cast<int>(in), oi = static_cast<int>(out);
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
  const Checks ck = checks("linear_backward", *this);
  const auto [n, in, out] = linear_dims(ck, x, w);
  ck.shape(dy, {n, out}, "dy");
  ck.shape(dw, {out, in}, "dw");
  if (dx) ck.shape(*dx, {n, in}, "dx");
  if (dbias) ck.shape(*dbias, {out}, "dbias");
  ck.fits_int(dy, "dy");
  const DeviceGuard guard(device_index());
  const int ni = static_cast<int>(n), ii = static_cast<int>(in), oi = static_cast<int>(out);
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

std::unique_ptr<Backend> make_cudnn_backend(int device_index, MathMode mode) {
  return std::make_unique<CudnnBackend>(device_index, mode);
}

}  // namespace convnet::cuda
