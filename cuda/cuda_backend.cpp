#include "cuda/cuda_backend.h"

#include <cstdint>
#include <limits>

#include "core/base/error.h"
#include "cuda/activation_kernels.h"
#include "cuda/batch_norm_kernels.h"
#include "cuda/conv_kernels.h"
#include "cuda/device.h"
#include "cuda/pool_kernels.h"
#include "cuda/reduce_kernels.h"

namespace convnet::cuda {

namespace {

// Argument checks with the cpu backend's wording (core/cpu/checks.cpp), against this backend's
// device instead of the host.
class Checks {
 public:
  Checks(const char* op, Device device) : op_(op), device_(device) {}

  const char* op() const { return op_; }

  // t is defined, lives on the backend's device and has the given dtype.
  void tensor(const Tensor& t, const char* name, DType dtype = DType::f32) const {
    CONVNET_CHECK(t.defined(), "{}: {} is undefined", op_, name);
    CONVNET_CHECK(t.device() == device_, "{}: {} lives on {}, the cuda backend runs on {}", op_, name, t.device().str(),
                  device_.str());
    CONVNET_CHECK(t.dtype() == dtype, "{}: {} has dtype {}, expected {}", op_, name, dtype_name(t.dtype()),
                  dtype_name(dtype));
  }
  void shape(const Tensor& t, const Shape& expected, const char* name, DType dtype = DType::f32) const {
    tensor(t, name, dtype);
    CONVNET_CHECK(t.shape() == expected, "{}: {} has shape {}, expected {}", op_, name, shape_str(t.shape()),
                  shape_str(expected));
  }
  void rank(const Tensor& t, int expected, const char* name, DType dtype = DType::f32) const {
    tensor(t, name, dtype);
    CONVNET_CHECK(t.rank() == expected, "{}: {} has shape {}, expected rank {}", op_, name, shape_str(t.shape()),
                  expected);
  }
  // The kernels' shape structs hold extents as int.
  int to_int(int64_t extent, const char* what) const {
    CONVNET_CHECK(extent >= 0 && extent <= std::numeric_limits<int>::max(),
                  "{}: {} {} exceeds the cuda kernels' 32-bit extent limit", op_, what, extent);
    return static_cast<int>(extent);
  }

 private:
  const char* op_;
  Device device_;
};

// Device pointers (Tensor::data refuses host access to device memory, by design).
const float* fp(const Tensor& t) {
  return static_cast<const float*>(t.raw());
}
float* fp(Tensor& t) {
  return static_cast<float*>(t.raw());
}
const float* fp_or_null(const Tensor* t) {
  return t ? fp(*t) : nullptr;
}
float* fp_or_null(Tensor* t) {
  return t ? fp(*t) : nullptr;
}

// A convolution's extents after core/cpu/conv.cpp's checks. The ConvShape the kernels take is
// built only for a non-empty batch (ConvShape requires n >= 1; an empty batch queues no kernel).
struct ConvGeometry {
  Shape x, w;
  int64_t p = 0, q = 0;
  Conv2dParams params;

  bool empty_batch() const { return x[0] == 0; }
  Shape output() const { return {x[0], p, q, w[0]}; }
  ConvShape shape(const Checks& chk) const {
    return ConvShape::make(chk.to_int(x[0], "batch size"), chk.to_int(x[1], "input height"),
                           chk.to_int(x[2], "input width"), chk.to_int(x[3], "input channels"),
                           chk.to_int(w[0], "output channels"), chk.to_int(w[1], "kernel height"),
                           chk.to_int(w[2], "kernel width"), params);
  }
};

// Geometry from x's and w's shapes, with core/cpu/conv.cpp's checks and messages.
ConvGeometry conv_geometry(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p, const Checks& chk) {
  const char* op = chk.op();
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(w_shape.size() == 4, "{}: filters have shape {}, expected rank 4 [K, R, S, C]", op, shape_str(w_shape));
  CONVNET_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, p.stride_h, p.stride_w);
  CONVNET_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "{}: dilation {}x{} must be >= 1", op, p.dilation_h,
                p.dilation_w);
  CONVNET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "{}: padding {}x{} must be >= 0", op, p.pad_h, p.pad_w);
  CONVNET_CHECK(w_shape[3] == x_shape[3], "{}: filters {} have {} input channels, the input {} has {}", op,
                shape_str(w_shape), w_shape[3], shape_str(x_shape), x_shape[3]);
  CONVNET_CHECK(w_shape[0] > 0 && w_shape[1] > 0 && w_shape[2] > 0 && w_shape[3] > 0, "{}: empty filters {}", op,
                shape_str(w_shape));
  ConvGeometry g{x_shape, w_shape, 0, 0, p};
  g.p = conv_output_size(x_shape[1], w_shape[1], p.stride_h, p.pad_h, p.dilation_h);
  g.q = conv_output_size(x_shape[2], w_shape[2], p.stride_w, p.pad_w, p.dilation_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} kernel (dilation {}x{})",
                op, x_shape[1], x_shape[2], p.pad_h, p.pad_w, w_shape[1], w_shape[2], p.dilation_h, p.dilation_w);
  return g;
}

// Pooling geometry from x's shape, with core/cpu/pool.cpp's checks and messages.
PoolShape pool_shape(const Shape& x_shape, const Pool2dParams& pr, const char* op) {
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(pr.kernel_h >= 1 && pr.kernel_w >= 1, "{}: kernel {}x{} must be >= 1", op, pr.kernel_h, pr.kernel_w);
  CONVNET_CHECK(pr.stride_h >= 1 && pr.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, pr.stride_h, pr.stride_w);
  // pad < kernel guarantees every window holds at least one real input element.
  CONVNET_CHECK(pr.pad_h >= 0 && pr.pad_w >= 0 && pr.pad_h < pr.kernel_h && pr.pad_w < pr.kernel_w,
                "{}: padding {}x{} must be >= 0 and smaller than the {}x{} kernel", op, pr.pad_h, pr.pad_w, pr.kernel_h,
                pr.kernel_w);
  PoolShape g;
  g.n = x_shape[0];
  g.h = x_shape[1];
  g.w = x_shape[2];
  g.c = x_shape[3];
  g.params = pr;
  g.p = conv_output_size(g.h, pr.kernel_h, pr.stride_h, pr.pad_h);
  g.q = conv_output_size(g.w, pr.kernel_w, pr.stride_w, pr.pad_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} window", op, g.h, g.w,
                pr.pad_h, pr.pad_w, pr.kernel_h, pr.kernel_w);
  return g;
}

// pool_shape after checking an op's tensors: `image` (x or dx) is f32 on the device, `pooled`
// (y or dy) is [N, P, Q, C] and, when given, `argmax` is i32 of the same shape.
PoolShape checked_pool_shape(const Checks& chk, const Pool2dParams& pr, const Tensor& image, const char* image_name,
                             const Tensor& pooled, const char* pooled_name, const Tensor* argmax = nullptr) {
  chk.tensor(image, image_name);
  const PoolShape g = pool_shape(image.shape(), pr, chk.op());
  const Shape pooled_shape{g.n, g.p, g.q, g.c};
  chk.shape(pooled, pooled_shape, pooled_name);
  if (argmax) chk.shape(*argmax, pooled_shape, "argmax", DType::i32);
  return g;
}

// Validates x (rank >= 1, f32) and returns its channel count C (last dim).
int64_t channels_of(const Tensor& x, const Checks& chk) {
  chk.tensor(x, "x");
  CONVNET_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "{}: x has shape {}, expected [..., C] with C > 0", chk.op(),
                shape_str(x.shape()));
  CONVNET_CHECK(x.dim(-1) <= kReduceMaxCols, "{}: x has {} channels, the cuda kernels reduce at most {}", chk.op(),
                x.dim(-1), kReduceMaxCols);
  return x.dim(-1);
}

// Device scratch for the batch-norm kernels, which read it as doubles.
void* batch_norm_scratch(void* ws) {
  CONVNET_CHECK(reinterpret_cast<uintptr_t>(ws) % alignof(double) == 0, "batch norm scratch {} is misaligned", ws);
  return ws;
}

// A linear layer as a 1x1 convolution: x [N, in] is the NHWC image [N, 1, 1, in], w [out, in] the
// KRSC filter bank [out, 1, 1, in] and y [N, out] the output [N, 1, 1, out]. The memory layouts
// are identical, so nothing is copied; linear layers get the conv kernels' tiled, deterministic
// GEMMs (forward = y = x w^T, backward-data = dy w, backward-filter = dy^T x with dbias = the
// column sums of dy) without a second GEMM implementation to write, tune and validate.
// Requires n >= 1 (an empty batch queues no kernel).
ConvShape linear_as_conv(int64_t n, int64_t in, int64_t out, const Checks& chk) {
  return ConvShape::make(chk.to_int(n, "batch size"), 1, 1, chk.to_int(in, "input features"),
                         chk.to_int(out, "output features"), 1, 1, Conv2dParams{});
}

struct LinearDims {
  int64_t n, in, out;
};
// The extents of x [N, in] and w [out, in], after checking both (core/cpu/linear.cpp).
LinearDims linear_dims(const Tensor& x, const Tensor& w, const Checks& chk) {
  chk.rank(x, 2, "x");
  chk.rank(w, 2, "w");
  const LinearDims d{x.dim(0), x.dim(1), w.dim(0)};
  chk.shape(w, {d.out, d.in}, "w");
  CONVNET_CHECK(d.in > 0 && d.out > 0, "{}: empty weights {}", chk.op(), shape_str(w.shape()));
  return d;
}

}  // namespace

CudaBackend::CudaBackend(int device_index) : GpuBackend("cuda", device_index) {}

// --- convolution ---

void CudaBackend::conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                                 const Conv2dParams& p) {
  const Checks chk("conv2d_forward", device());
  chk.tensor(x, "x");
  chk.tensor(w, "w");
  const ConvGeometry g = conv_geometry(x.shape(), w.shape(), p, chk);
  chk.shape(y, g.output(), "y");
  if (bias) chk.shape(*bias, {g.w[0]}, "bias");
  if (g.empty_batch()) return;
  const DeviceGuard guard(device_index());
  cuda::conv2d_forward(fp(x), fp(w), fp_or_null(bias), fp(y), g.shape(chk), stream());
}

void CudaBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const Checks chk("conv2d_backward_data", device());
  chk.tensor(dx, "dx");
  chk.tensor(w, "w");
  const ConvGeometry g = conv_geometry(dx.shape(), w.shape(), p, chk);
  chk.shape(dy, g.output(), "dy");
  if (g.empty_batch()) return;
  const DeviceGuard guard(device_index());
  cuda::conv2d_backward_data(fp(dy), fp(w), fp(dx), g.shape(chk), stream());
}

void CudaBackend::conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                                         const Conv2dParams& p) {
  const Checks chk("conv2d_backward_filter", device());
  chk.tensor(dw, "dw");
  chk.tensor(x, "x");
  const ConvGeometry g = conv_geometry(x.shape(), dw.shape(), p, chk);
  chk.shape(dy, g.output(), "dy");
  if (dbias) chk.shape(*dbias, {g.w[0]}, "dbias");
  if (g.empty_batch()) {  // an empty batch contributes nothing: the gradients are zero
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  const ConvShape s = g.shape(chk);
  const DeviceGuard guard(device_index());
  // The only scratch user in this call, so the split-K partials cannot collide with anything.
  void* workspace = scratch(conv2d_backward_filter_workspace(s));
  cuda::conv2d_backward_filter(fp(x), fp(dy), fp(dw), fp_or_null(dbias), s, workspace, stream());
}

// --- pooling ---

void CudaBackend::max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const Checks chk("max_pool2d_forward", device());
  const PoolShape g = checked_pool_shape(chk, p, x, "x", y, "y", &argmax);
  const DeviceGuard guard(device_index());
  launch_max_pool2d_forward(fp(x), fp(y), static_cast<int32_t*>(argmax.raw()), g, stream());
}

void CudaBackend::max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p) {
  const Checks chk("max_pool2d_backward", device());
  const PoolShape g = checked_pool_shape(chk, p, dx, "dx", dy, "dy", &argmax);
  const DeviceGuard guard(device_index());
  launch_max_pool2d_backward(fp(dy), static_cast<const int32_t*>(argmax.raw()), fp(dx), g, stream());
}

void CudaBackend::avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p) {
  const Checks chk("avg_pool2d_forward", device());
  const PoolShape g = checked_pool_shape(chk, p, x, "x", y, "y");
  const DeviceGuard guard(device_index());
  launch_avg_pool2d_forward(fp(x), fp(y), g, stream());
}

void CudaBackend::avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p) {
  const Checks chk("avg_pool2d_backward", device());
  const PoolShape g = checked_pool_shape(chk, p, dx, "dx", dy, "dy");
  const DeviceGuard guard(device_index());
  launch_avg_pool2d_backward(fp(dy), fp(dx), g, stream());
}

// --- activations ---

void CudaBackend::relu_forward(const Tensor& x, Tensor& y) {
  const Checks chk("relu_forward", device());
  chk.tensor(x, "x");
  chk.shape(y, x.shape(), "y");
  const DeviceGuard guard(device_index());
  launch_relu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudaBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const Checks chk("relu_backward", device());
  chk.tensor(y, "y");
  chk.shape(dy, y.shape(), "dy");
  chk.shape(dx, y.shape(), "dx");
  const DeviceGuard guard(device_index());
  launch_relu_backward(fp(y), fp(dy), fp(dx), y.numel(), stream());
}

void CudaBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const Checks chk("gelu_forward", device());
  chk.tensor(x, "x");
  chk.shape(y, x.shape(), "y");
  const DeviceGuard guard(device_index());
  launch_gelu_forward(fp(x), fp(y), x.numel(), stream());
}

void CudaBackend::gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const Checks chk("gelu_backward", device());
  chk.tensor(x, "x");
  chk.shape(dy, x.shape(), "dy");
  chk.shape(dx, x.shape(), "dx");
  const DeviceGuard guard(device_index());
  launch_gelu_backward(fp(x), fp(dy), fp(dx), x.numel(), stream());
}

// --- batch normalization ---

void CudaBackend::batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                           Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                           Tensor& running_var, float momentum, float eps) {
  const Checks chk("batch_norm_forward_train", device());
  const int64_t channels = channels_of(x, chk);
  const Shape cshape{channels};
  chk.shape(gamma, cshape, "gamma");
  chk.shape(beta, cshape, "beta");
  chk.shape(y, x.shape(), "y");
  chk.shape(saved_mean, cshape, "saved_mean");
  chk.shape(saved_invstd, cshape, "saved_invstd");
  chk.shape(running_mean, cshape, "running_mean");
  chk.shape(running_var, cshape, "running_var");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", chk.op(), eps);
  CONVNET_CHECK(momentum >= 0.0f && momentum <= 1.0f, "{}: momentum {} must lie in [0, 1]", chk.op(), momentum);
  const int64_t rows = x.numel() / channels;
  if (rows < 2)
    throw Error(
        fmt::format("batch_norm: training needs more than one value per channel, got input {}", shape_str(x.shape())));
  const DeviceGuard guard(device_index());
  // The only scratch user in this call (partial sums, per-channel sums and coefficients).
  void* ws = batch_norm_scratch(scratch(batch_norm_scratch_bytes(rows, channels)));
  launch_batch_norm_forward_train(fp(x), fp(gamma), fp(beta), fp(y), fp(saved_mean), fp(saved_invstd), fp(running_mean),
                                  fp(running_var), rows, channels, momentum, eps, ws, stream());
}

void CudaBackend::batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          const Tensor& running_mean, const Tensor& running_var, float eps, Tensor& y) {
  const Checks chk("batch_norm_forward_eval", device());
  const int64_t channels = channels_of(x, chk);
  const Shape cshape{channels};
  chk.shape(gamma, cshape, "gamma");
  chk.shape(beta, cshape, "beta");
  chk.shape(running_mean, cshape, "running_mean");
  chk.shape(running_var, cshape, "running_var");
  chk.shape(y, x.shape(), "y");
  CONVNET_CHECK(eps >= 0.0f, "{}: eps {} must be >= 0", chk.op(), eps);
  const int64_t rows = x.numel() / channels;
  const DeviceGuard guard(device_index());
  void* ws = batch_norm_scratch(scratch(batch_norm_scratch_bytes(rows, channels)));
  launch_batch_norm_forward_eval(fp(x), fp(gamma), fp(beta), fp(running_mean), fp(running_var), rows, channels, eps,
                                 fp(y), ws, stream());
}

void CudaBackend::batch_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& saved_mean,
                                      const Tensor& saved_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const Checks chk("batch_norm_backward", device());
  const int64_t channels = channels_of(x, chk);
  const Shape cshape{channels};
  chk.shape(dy, x.shape(), "dy");
  chk.shape(gamma, cshape, "gamma");
  chk.shape(saved_mean, cshape, "saved_mean");
  chk.shape(saved_invstd, cshape, "saved_invstd");
  chk.shape(dx, x.shape(), "dx");
  chk.shape(dgamma, cshape, "dgamma");
  chk.shape(dbeta, cshape, "dbeta");
  const int64_t rows = x.numel() / channels;
  const DeviceGuard guard(device_index());
  void* ws = batch_norm_scratch(scratch(batch_norm_scratch_bytes(rows, channels)));
  launch_batch_norm_backward(fp(x), fp(dy), fp(gamma), fp(saved_mean), fp(saved_invstd), rows, channels, fp(dx),
                             fp(dgamma), fp(dbeta), ws, stream());
}

// --- linear (1x1 convolutions, see linear_as_conv) ---

void CudaBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const Checks chk("linear_forward", device());
  const auto [n, in, out] = linear_dims(x, w, chk);
  chk.shape(y, {n, out}, "y");
  if (bias) chk.shape(*bias, {out}, "bias");
  if (n == 0) return;
  const ConvShape s = linear_as_conv(n, in, out, chk);
  const DeviceGuard guard(device_index());
  cuda::conv2d_forward(fp(x), fp(w), fp_or_null(bias), fp(y), s, stream());
}

void CudaBackend::linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw,
                                  Tensor* dbias) {
  const Checks chk("linear_backward", device());
  const auto [n, in, out] = linear_dims(x, w, chk);
  chk.shape(dy, {n, out}, "dy");
  chk.shape(dw, {out, in}, "dw");
  if (dx) chk.shape(*dx, {n, in}, "dx");
  if (dbias) chk.shape(*dbias, {out}, "dbias");
  if (n == 0) {  // an empty batch contributes nothing: the gradients are zero
    fill(dw, 0.0f);
    if (dbias) fill(*dbias, 0.0f);
    return;
  }
  const ConvShape s = linear_as_conv(n, in, out, chk);
  const DeviceGuard guard(device_index());
  if (dx) cuda::conv2d_backward_data(fp(dy), fp(w), fp(*dx), s, stream());
  // The only scratch user in this call (backward-data above needs none).
  void* workspace = scratch(conv2d_backward_filter_workspace(s));
  cuda::conv2d_backward_filter(fp(x), fp(dy), fp(dw), fp_or_null(dbias), s, workspace, stream());
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return std::make_unique<CudaBackend>(device_index);
}

}  // namespace convnet::cuda
