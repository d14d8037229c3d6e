#include "core/cpu/conv.h"

#include <algorithm>

#include "core/base/error.h"
#include "core/cpu/bias.h"
#include "core/cpu/checks.h"
#include "core/cpu/gemm.h"

namespace convnet::cpu {

ConvGeometry conv_geometry(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p, const char* op) {
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(w_shape.size() == 4, "{}: filters have shape {}, expected rank 4 [K, R, S, C]", op, shape_str(w_shape));
  CONVNET_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, p.stride_h, p.stride_w);
  CONVNET_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "{}: dilation {}x{} must be >= 1", op, p.dilation_h,
                p.dilation_w);
  CONVNET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "{}: padding {}x{} must be >= 0", op, p.pad_h, p.pad_w);
  ConvGeometry g;
  g.n = x_shape[0];
  g.h = x_shape[1];
  g.w = x_shape[2];
  g.c = x_shape[3];
  g.k = w_shape[0];
  g.r = w_shape[1];
  g.s = w_shape[2];
  g.params = p;
  CONVNET_CHECK(w_shape[3] == g.c, "{}: filters {} have {} input channels, the input {} has {}", op, shape_str(w_shape),
                w_shape[3], shape_str(x_shape), g.c);
  CONVNET_CHECK(g.k > 0 && g.r > 0 && g.s > 0 && g.c > 0, "{}: empty filters {}", op, shape_str(w_shape));
  g.p = conv_output_size(g.h, g.r, p.stride_h, p.pad_h, p.dilation_h);
  g.q = conv_output_size(g.w, g.s, p.stride_w, p.pad_w, p.dilation_w);
  CONVNET_CHECK(g.p > 0 && g.q > 0, "{}: input {}x{} (padding {}x{}) is smaller than the {}x{} kernel (dilation {}x{})",
                op, g.h, g.w, p.pad_h, p.pad_w, g.r, g.s, p.dilation_h, p.dilation_w);
  return g;
}

ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p, const char* op) {
  check_tensor(x, op, "x");
  check_tensor(w, op, "w");
  return conv_geometry(x.shape(), w.shape(), p, op);
}

int64_t conv_chunk_images(const ConvGeometry& g) {
  const int64_t bytes_per_image = std::max<int64_t>(1, g.p * g.q * g.patch() * int64_t{sizeof(float)});
  return std::clamp<int64_t>(kConvColumnsBudgetBytes / bytes_per_image, 1, std::max<int64_t>(g.n, 1));
}

namespace {
// The column matrix of images [n0, n0 + count): the input itself for identity geometry, else im2col
// into the workspace.
const float* columns_for(const float* x, int64_t n0, int64_t count, const ConvGeometry& g, Workspace& ws) {
  const float* x_chunk = x + n0 * g.h * g.w * g.c;
  if (g.identity_columns()) return x_chunk;
  float* cols = ws.floats(static_cast<size_t>(count * g.p * g.q * g.patch()));
  im2col(x_chunk, count, g, cols);
  return cols;
}

// Calls fn(n0, count) for consecutive chunks of conv_chunk_images(g) images covering the batch.
template <class Fn>
void for_each_chunk(const ConvGeometry& g, Fn&& fn) {
  const int64_t chunk = conv_chunk_images(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) fn(n0, std::min(chunk, g.n - n0));
}
}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p,
                    Workspace& ws) {
  const char* op = "conv2d_forward";
  const ConvGeometry g = conv_geometry(x, w, p, op);
  check_shape(y, {g.n, g.p, g.q, g.k}, op, "y");
  if (bias) check_shape(*bias, {g.k}, op, "bias");
  const float* xp = x.f32();
  const float* wp = w.f32();
  float* yp = y.f32();
  for_each_chunk(g, [&](int64_t n0, int64_t count) {
    const float* cols = columns_for(xp, n0, count, g, ws);
    // y[rows, K] = cols[rows, RSC] * w[K, RSC]^T
    sgemm(false, true, count * g.p * g.q, g.k, g.patch(), 1.0f, cols, g.patch(), wp, g.patch(), 0.0f,
          yp + n0 * g.p * g.q * g.k, g.k);
  });
  if (bias) add_bias(yp, g.n * g.p * g.q, g.k, bias->f32());
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p, Workspace& ws) {
  const char* op = "conv2d_backward_data";
  check_tensor(dx, op, "dx");
  check_tensor(w, op, "w");
  const ConvGeometry g = conv_geometry(dx.shape(), w.shape(), p, op);
  check_shape(dy, {g.n, g.p, g.q, g.k}, op, "dy");
  const float* dyp = dy.f32();
  const float* wp = w.f32();
  float* dxp = dx.f32();
  for_each_chunk(g, [&](int64_t n0, int64_t count) {
    const int64_t rows = count * g.p * g.q;
    float* dx_chunk = dxp + n0 * g.h * g.w * g.c;
    // With identity geometry the columns are dx itself; otherwise scatter them back with col2im.
    float* cols = g.identity_columns() ? dx_chunk : ws.floats(static_cast<size_t>(rows * g.patch()));
    // cols[rows, RSC] = dy[rows, K] * w[K, RSC]
    sgemm(false, false, rows, g.patch(), g.k, 1.0f, dyp + n0 * g.p * g.q * g.k, g.k, wp, g.patch(), 0.0f, cols,
          g.patch());
    if (!g.identity_columns()) col2im(cols, count, g, dx_chunk);
  });
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias, const Conv2dParams& p,
                            Workspace& ws) {
  const char* op = "conv2d_backward_filter";
  check_tensor(dw, op, "dw");
  check_tensor(x, op, "x");
  const ConvGeometry g = conv_geometry(x.shape(), dw.shape(), p, op);
  check_shape(dy, {g.n, g.p, g.q, g.k}, op, "dy");
  if (dbias) check_shape(*dbias, {g.k}, op, "dbias");
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  float* dwp = dw.f32();
  if (g.n == 0) std::fill(dwp, dwp + dw.numel(), 0.0f);
  for_each_chunk(g, [&](int64_t n0, int64_t count) {
    const float* cols = columns_for(xp, n0, count, g, ws);
    // dw[K, RSC] (+)= dy[rows, K]^T * cols[rows, RSC]; the chunk order is fixed, so this is deterministic.
    sgemm(true, false, g.k, g.patch(), count * g.p * g.q, 1.0f, dyp + n0 * g.p * g.q * g.k, g.k, cols, g.patch(),
          n0 == 0 ? 0.0f : 1.0f, dwp, g.patch());
  });
  if (dbias) bias_gradient(dyp, g.n * g.p * g.q, g.k, dbias->f32());
}

}  // namespace convnet::cpu
