#include "core/cpu/conv.h"

#include <algorithm>

#include "core/cpu/bias.h"
#include "core/cpu/gemm.h"

namespace convnet::cpu {

ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p, const char* op) {
  const OpChecks check = OpChecks::cpu(op);
  check.tensor(x, "x");
  check.tensor(w, "w");
  return check.conv2d(x.shape(), w.shape(), p);
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
  if (identity_columns(g)) return x_chunk;
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
  const ConvGeometry g = OpChecks::cpu("conv2d_forward").conv2d_forward(x, w, bias, y, p);
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
  const ConvGeometry g = OpChecks::cpu("conv2d_backward_data").conv2d_backward_data(dy, w, dx, p);
  const float* dyp = dy.f32();
  const float* wp = w.f32();
  float* dxp = dx.f32();
  for_each_chunk(g, [&](int64_t n0, int64_t count) {
    const int64_t rows = count * g.p * g.q;
    float* dx_chunk = dxp + n0 * g.h * g.w * g.c;
    // With identity geometry the columns are dx itself; otherwise scatter them back with col2im.
    float* cols = identity_columns(g) ? dx_chunk : ws.floats(static_cast<size_t>(rows * g.patch()));
    // cols[rows, RSC] = dy[rows, K] * w[K, RSC]
    sgemm(false, false, rows, g.patch(), g.k, 1.0f, dyp + n0 * g.p * g.q * g.k, g.k, wp, g.patch(), 0.0f, cols,
          g.patch());
    if (!identity_columns(g)) col2im(cols, count, g, dx_chunk);
  });
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias, const Conv2dParams& p,
                            Workspace& ws) {
  const ConvGeometry g = OpChecks::cpu("conv2d_backward_filter").conv2d_backward_filter(x, dy, dw, dbias, p);
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
