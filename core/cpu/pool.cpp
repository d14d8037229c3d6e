#include "core/cpu/pool.h"

#include <algorithm>

#include "core/base/error.h"
#include "core/cpu/checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {

struct PoolGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0, p = 0, q = 0;
  Pool2dParams params;
};

PoolGeometry pool_geometry(const Shape& x_shape, const Pool2dParams& pr, const char* op) {
  CONVNET_CHECK(x_shape.size() == 4, "{}: input has shape {}, expected rank 4 [N, H, W, C]", op, shape_str(x_shape));
  CONVNET_CHECK(pr.kernel_h >= 1 && pr.kernel_w >= 1, "{}: kernel {}x{} must be >= 1", op, pr.kernel_h, pr.kernel_w);
  CONVNET_CHECK(pr.stride_h >= 1 && pr.stride_w >= 1, "{}: stride {}x{} must be >= 1", op, pr.stride_h, pr.stride_w);
  // pad < kernel guarantees every window holds at least one real input element.
  CONVNET_CHECK(pr.pad_h >= 0 && pr.pad_w >= 0 && pr.pad_h < pr.kernel_h && pr.pad_w < pr.kernel_w,
                "{}: padding {}x{} must be >= 0 and smaller than the {}x{} kernel", op, pr.pad_h, pr.pad_w, pr.kernel_h,
                pr.kernel_w);
  PoolGeometry g;
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

// Output positions o in [lo, hi] whose window (start o * stride - pad, extent kernel) covers input i.
struct Range {
  int64_t lo, hi;
};
Range windows_covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad, int64_t out) {
  const int64_t first = i + pad - kernel + 1;
  const int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t hi = std::min(out - 1, (i + pad) / stride);
  return {lo, hi};
}

// The valid part [lo, hi) of a window starting at `start` with extent `kernel` over [0, size).
Range window_inside(int64_t start, int64_t kernel, int64_t size) {
  return {std::max<int64_t>(0, -start), std::min<int64_t>(kernel, size - start)};
}

// Folds one window position into the running per-channel maximum. Strictly greater keeps the
// first maximum; a NaN replaces any number. Branch-free with restrict pointers so it vectorises.
void max_update(const float* __restrict v, float* __restrict best, int32_t* __restrict idx, int64_t channels,
                int32_t local) {
  for (int64_t c = 0; c < channels; ++c) {
    const float cur = best[c], cand = v[c];
    const bool take = (cand > cur) | ((cand != cand) & (cur == cur));
    best[c] = take ? cand : cur;
    idx[c] = take ? local : idx[c];
  }
}

// Adds dy to out for the channels whose window maximum sat at `local`. Branch-free to vectorise.
void route_gradient(const float* __restrict dy, const int32_t* __restrict argmax, float* __restrict out,
                    int64_t channels, int32_t local) {
  // Both operands are loaded unconditionally so the select compiles to a vector blend.
  for (int64_t c = 0; c < channels; ++c) {
    const float g = dy[c];
    out[c] += argmax[c] == local ? g : 0.0f;
  }
}

}  // namespace

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& pr) {
  const char* op = "max_pool2d_forward";
  check_tensor(x, op, "x");
  const PoolGeometry g = pool_geometry(x.shape(), pr, op);
  check_shape(y, {g.n, g.p, g.q, g.c}, op, "y");
  check_shape(argmax, {g.n, g.p, g.q, g.c}, op, "argmax", DType::i32);
  const float* xp = x.f32();
  float* yp = y.f32();
  int32_t* ap = argmax.data<int32_t>();
  parallel_for(0, g.n * g.p, 2, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.p, oh = row % g.p;
      const int64_t h0 = oh * pr.stride_h - pr.pad_h;
      const Range rr = window_inside(h0, pr.kernel_h, g.h);
      for (int64_t oq = 0; oq < g.q; ++oq) {
        const int64_t w0 = oq * pr.stride_w - pr.pad_w;
        const Range sr = window_inside(w0, pr.kernel_w, g.w);
        float* best = yp + (row * g.q + oq) * g.c;
        int32_t* idx = ap + (row * g.q + oq) * g.c;
        bool first = true;
        for (int64_t r = rr.lo; r < rr.hi; ++r) {
          for (int64_t s = sr.lo; s < sr.hi; ++s) {
            const float* v = xp + ((img * g.h + h0 + r) * g.w + w0 + s) * g.c;
            const auto local = static_cast<int32_t>(r * pr.kernel_w + s);
            if (first) {
              std::copy(v, v + g.c, best);
              std::fill(idx, idx + g.c, local);
              first = false;
              continue;
            }
            max_update(v, best, idx, g.c, local);
          }
        }
      }
    }
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& pr) {
  const char* op = "max_pool2d_backward";
  check_tensor(dx, op, "dx");
  const PoolGeometry g = pool_geometry(dx.shape(), pr, op);
  check_shape(dy, {g.n, g.p, g.q, g.c}, op, "dy");
  check_shape(argmax, {g.n, g.p, g.q, g.c}, op, "argmax", DType::i32);
  const float* dyp = dy.f32();
  const int32_t* ap = argmax.data<int32_t>();
  float* dxp = dx.f32();
  parallel_for(0, g.n * g.h, 2, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.h, ih = row % g.h;
      const Range oh_range = windows_covering(ih, pr.kernel_h, pr.stride_h, pr.pad_h, g.p);
      for (int64_t iw = 0; iw < g.w; ++iw) {
        float* out = dxp + (row * g.w + iw) * g.c;
        std::fill(out, out + g.c, 0.0f);
        const Range ow_range = windows_covering(iw, pr.kernel_w, pr.stride_w, pr.pad_w, g.q);
        for (int64_t oh = oh_range.lo; oh <= oh_range.hi; ++oh) {
          const int64_t r = ih + pr.pad_h - oh * pr.stride_h;
          for (int64_t oq = ow_range.lo; oq <= ow_range.hi; ++oq) {
            const int64_t s = iw + pr.pad_w - oq * pr.stride_w;
            const auto local = static_cast<int32_t>(r * pr.kernel_w + s);
            const int64_t base = ((img * g.p + oh) * g.q + oq) * g.c;
            route_gradient(dyp + base, ap + base, out, g.c, local);
          }
        }
      }
    }
  });
}

void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& pr) {
  const char* op = "avg_pool2d_forward";
  check_tensor(x, op, "x");
  const PoolGeometry g = pool_geometry(x.shape(), pr, op);
  check_shape(y, {g.n, g.p, g.q, g.c}, op, "y");
  const float* xp = x.f32();
  float* yp = y.f32();
  const float scale = 1.0f / static_cast<float>(pr.kernel_h * pr.kernel_w);
  parallel_for(0, g.n * g.p, 2, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.p, oh = row % g.p;
      const int64_t h0 = oh * pr.stride_h - pr.pad_h;
      const Range rr = window_inside(h0, pr.kernel_h, g.h);
      for (int64_t oq = 0; oq < g.q; ++oq) {
        const int64_t w0 = oq * pr.stride_w - pr.pad_w;
        const Range sr = window_inside(w0, pr.kernel_w, g.w);
        float* out = yp + (row * g.q + oq) * g.c;
        std::fill(out, out + g.c, 0.0f);
        for (int64_t r = rr.lo; r < rr.hi; ++r)
          for (int64_t s = sr.lo; s < sr.hi; ++s) {
            const float* v = xp + ((img * g.h + h0 + r) * g.w + w0 + s) * g.c;
            for (int64_t c = 0; c < g.c; ++c) out[c] += v[c];
          }
        for (int64_t c = 0; c < g.c; ++c) out[c] *= scale;
      }
    }
  });
}

void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& pr) {
  const char* op = "avg_pool2d_backward";
  check_tensor(dx, op, "dx");
  const PoolGeometry g = pool_geometry(dx.shape(), pr, op);
  check_shape(dy, {g.n, g.p, g.q, g.c}, op, "dy");
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  const float scale = 1.0f / static_cast<float>(pr.kernel_h * pr.kernel_w);
  parallel_for(0, g.n * g.h, 2, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.h, ih = row % g.h;
      const Range oh_range = windows_covering(ih, pr.kernel_h, pr.stride_h, pr.pad_h, g.p);
      for (int64_t iw = 0; iw < g.w; ++iw) {
        float* out = dxp + (row * g.w + iw) * g.c;
        std::fill(out, out + g.c, 0.0f);
        const Range ow_range = windows_covering(iw, pr.kernel_w, pr.stride_w, pr.pad_w, g.q);
        for (int64_t oh = oh_range.lo; oh <= oh_range.hi; ++oh)
          for (int64_t oq = ow_range.lo; oq <= ow_range.hi; ++oq) {
            const float* src = dyp + ((img * g.p + oh) * g.q + oq) * g.c;
            for (int64_t c = 0; c < g.c; ++c) out[c] += src[c];
          }
        for (int64_t c = 0; c < g.c; ++c) out[c] *= scale;
      }
    }
  });
}

}  // namespace convnet::cpu
