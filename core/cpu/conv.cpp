#include "core/cpu/conv.h"

#include <algorithm>

#include "core/cpu/bias.h"
#include "core/cpu/conv_depthwise.h"
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
// A column matrix (im2col.h) and its leading dimension.
struct Columns {
  const float* data;
  int64_t ld;
};

// The column matrix of group `group` for images [n0, n0 + count): the input itself (the group's
// channels, row stride C) for identity geometry, else im2col into the workspace.
Columns columns_for(const float* x, int64_t n0, int64_t count, int64_t group, const ConvGeometry& g, Workspace& ws) {
  const float* x_chunk = x + n0 * g.h * g.w * g.c;
  if (identity_columns(g)) return {x_chunk + group * g.group_c(), g.c};
  float* cols = ws.floats(static_cast<size_t>(count * g.p * g.q * g.patch()));
  im2col(x_chunk, count, g, cols, group);
  return {cols, g.patch()};
}

// Calls fn(n0, count) for consecutive chunks of conv_chunk_images(g) images covering the batch.
template <class Fn>
void for_each_chunk(const ConvGeometry& g, Fn&& fn) {
  const int64_t chunk = conv_chunk_images(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) fn(n0, std::min(chunk, g.n - n0));
}
}  // namespace

// Each pass runs one GEMM per group (a single one without groups): group `grp` multiplies its own
// column matrix with its filters w[grp * K/groups, ...], a [K/groups, patch] block, and reads or
// writes its K/groups columns of y / dy (leading dimension K). Depthwise geometry takes the direct
// loops of conv_depthwise.h instead.

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p,
                    Workspace& ws) {
  const ConvGeometry g = OpChecks::cpu("conv2d_forward").conv2d_forward(x, w, bias, y, p);
  const float* xp = x.f32();
  const float* wp = w.f32();
  float* yp = y.f32();
  if (is_depthwise(g)) {
    depthwise_forward(xp, wp, yp, g, ws);
  } else {
    for_each_chunk(g, [&](int64_t n0, int64_t count) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const Columns cols = columns_for(xp, n0, count, grp, g, ws);
        // y[rows, group's K] = cols[rows, patch] * w[group's K, patch]^T
        sgemm(false, true, count * g.p * g.q, g.group_k(), g.patch(), 1.0f, cols.data, cols.ld,
              wp + grp * g.group_k() * g.patch(), g.patch(), 0.0f, yp + n0 * g.p * g.q * g.k + grp * g.group_k(), g.k);
      }
    });
  }
  if (bias) add_bias(yp, g.n * g.p * g.q, g.k, bias->f32());
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p, Workspace& ws) {
  const ConvGeometry g = OpChecks::cpu("conv2d_backward_data").conv2d_backward_data(dy, w, dx, p);
  const float* dyp = dy.f32();
  const float* wp = w.f32();
  float* dxp = dx.f32();
  if (is_depthwise(g)) {
    depthwise_backward_data(dyp, wp, dxp, g, ws);
    return;
  }
  for_each_chunk(g, [&](int64_t n0, int64_t count) {
    const int64_t rows = count * g.p * g.q;
    float* dx_chunk = dxp + n0 * g.h * g.w * g.c;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      // With identity geometry the columns are the group's channels of dx itself; otherwise
      // scatter them back with col2im.
      float* cols =
          identity_columns(g) ? dx_chunk + grp * g.group_c() : ws.floats(static_cast<size_t>(rows * g.patch()));
      const int64_t ld = identity_columns(g) ? g.c : g.patch();
      // cols[rows, patch] = dy[rows, group's K] * w[group's K, patch]
      sgemm(false, false, rows, g.patch(), g.group_k(), 1.0f, dyp + n0 * g.p * g.q * g.k + grp * g.group_k(), g.k,
            wp + grp * g.group_k() * g.patch(), g.patch(), 0.0f, cols, ld);
      if (!identity_columns(g)) col2im(cols, count, g, dx_chunk, grp);
    }
  });
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias, const Conv2dParams& p,
                            Workspace& ws) {
  const ConvGeometry g = OpChecks::cpu("conv2d_backward_filter").conv2d_backward_filter(x, dy, dw, dbias, p);
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  float* dwp = dw.f32();
  if (is_depthwise(g)) {
    depthwise_backward_filter(xp, dyp, dwp, g);
  } else {
    if (g.n == 0) std::fill(dwp, dwp + dw.numel(), 0.0f);
    for_each_chunk(g, [&](int64_t n0, int64_t count) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const Columns cols = columns_for(xp, n0, count, grp, g, ws);
        // dw[group's K, patch] (+)= dy[rows, group's K]^T * cols[rows, patch]; the chunk order is
        // fixed, so this is deterministic.
        sgemm(true, false, g.group_k(), g.patch(), count * g.p * g.q, 1.0f,
              dyp + n0 * g.p * g.q * g.k + grp * g.group_k(), g.k, cols.data, cols.ld, n0 == 0 ? 0.0f : 1.0f,
              dwp + grp * g.group_k() * g.patch(), g.patch());
      }
    });
  }
  if (dbias) bias_gradient(dyp, g.n * g.p * g.q, g.k, dbias->f32());
}

}  // namespace convnet::cpu
