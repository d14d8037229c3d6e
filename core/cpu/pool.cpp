#include "core/cpu/pool.h"

#include <algorithm>

#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {

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

// Calls fn(img, i) for every image img and row i in [0, rows) of it, rows spread over the threads.
template <class Fn>
void for_each_image_row(int64_t images, int64_t rows, Fn&& fn) {
  parallel_for(0, images * rows, 2, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) fn(row / rows, row % rows);
  });
}

// The taps of one output position's window that lie inside the input: tap (r, s) reads input cell
// origin + r * w + s (origin, the cell of tap (0, 0), may sit in the padding).
struct WindowTaps {
  int64_t origin, w, kernel_w;
  Range rows, cols;
  // Calls fn(input cell, window-local index r * kernel_w + s) for each tap, row by row.
  template <class Fn>
  void each(Fn&& fn) const {
    for (int64_t r = rows.lo; r < rows.hi; ++r)
      for (int64_t s = cols.lo; s < cols.hi; ++s) fn(origin + r * w + s, static_cast<int32_t>(r * kernel_w + s));
  }
};

// Calls visit(output cell, taps) for every output position.
template <class Visit>
void for_each_window(const PoolGeometry& g, Visit&& visit) {
  const Pool2dParams& pr = g.params;
  for_each_image_row(g.n, g.p, [&](int64_t img, int64_t oh) {
    const int64_t h0 = oh * pr.stride_h - pr.pad_h;
    const Range rows = window_inside(h0, pr.kernel_h, g.h);
    for (int64_t oq = 0; oq < g.q; ++oq) {
      const int64_t w0 = oq * pr.stride_w - pr.pad_w;
      visit((img * g.p + oh) * g.q + oq,
            WindowTaps{(img * g.h + h0) * g.w + w0, g.w, pr.kernel_w, rows, window_inside(w0, pr.kernel_w, g.w)});
    }
  });
}

// The output windows that cover one input cell (ih, iw) of image img.
struct CoveringWindows {
  const PoolGeometry& g;
  int64_t img, ih, iw;
  Range oh, oq;
  // Calls fn(output cell, local index of the input cell inside that window) for each window.
  template <class Fn>
  void each(Fn&& fn) const {
    const Pool2dParams pr = g.params;
    const int64_t p = g.p, q_out = g.q;
    for (int64_t h = oh.lo; h <= oh.hi; ++h) {
      const int64_t r = ih + pr.pad_h - h * pr.stride_h;
      for (int64_t q = oq.lo; q <= oq.hi; ++q) {
        const int64_t s = iw + pr.pad_w - q * pr.stride_w;
        fn((img * p + h) * q_out + q, static_cast<int32_t>(r * pr.kernel_w + s));
      }
    }
  }
};

// Calls visit(input cell, windows covering it) for every input position.
template <class Visit>
void for_each_input(const PoolGeometry& g, Visit&& visit) {
  const Pool2dParams& pr = g.params;
  for_each_image_row(g.n, g.h, [&](int64_t img, int64_t ih) {
    const Range oh = windows_covering(ih, pr.kernel_h, pr.stride_h, pr.pad_h, g.p);
    for (int64_t iw = 0; iw < g.w; ++iw)
      visit((img * g.h + ih) * g.w + iw,
            CoveringWindows{g, img, ih, iw, oh, windows_covering(iw, pr.kernel_w, pr.stride_w, pr.pad_w, g.q)});
  });
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

void add_to(float* __restrict out, const float* __restrict v, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) out[c] += v[c];
}

// out[0, C) = factor * the sum of the C-vectors of src at the cells that `cells` visits (WindowTaps
// for the forward average, CoveringWindows for its adjoint).
template <class Cells>
void average_into(float* out, const float* src, const Cells& cells, int64_t channels, float factor) {
  std::fill(out, out + channels, 0.0f);
  cells.each([&](int64_t cell, int32_t) { add_to(out, src + cell * channels, channels); });
  for (int64_t c = 0; c < channels; ++c) out[c] *= factor;
}

// Padding counts towards the window size (PyTorch's count_include_pad).
float average_factor(const Pool2dParams& pr) {
  return 1.0f / static_cast<float>(pr.kernel_h * pr.kernel_w);
}

}  // namespace

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& pr) {
  const PoolGeometry g = OpChecks::cpu("max_pool2d_forward").max_pool2d_forward(x, y, argmax, pr);
  const float* xp = x.f32();
  float* yp = y.f32();
  int32_t* ap = argmax.data<int32_t>();
  const int64_t channels = g.c;
  for_each_window(g, [&](int64_t out_cell, const WindowTaps& taps) {
    float* best = yp + out_cell * channels;
    int32_t* idx = ap + out_cell * channels;
    bool first = true;
    taps.each([&](int64_t in_cell, int32_t local) {
      const float* v = xp + in_cell * channels;
      if (first) {
        std::copy(v, v + channels, best);
        std::fill(idx, idx + channels, local);
        first = false;
        return;
      }
      max_update(v, best, idx, channels, local);
    });
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& pr) {
  const PoolGeometry g = OpChecks::cpu("max_pool2d_backward").max_pool2d_backward(dy, argmax, dx, pr);
  const float* dyp = dy.f32();
  const int32_t* ap = argmax.data<int32_t>();
  float* dxp = dx.f32();
  const int64_t channels = g.c;
  for_each_input(g, [&](int64_t in_cell, const CoveringWindows& windows) {
    float* out = dxp + in_cell * channels;
    std::fill(out, out + channels, 0.0f);
    windows.each([&](int64_t out_cell, int32_t local) {
      route_gradient(dyp + out_cell * channels, ap + out_cell * channels, out, channels, local);
    });
  });
}

void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& pr) {
  const PoolGeometry g = OpChecks::cpu("avg_pool2d_forward").avg_pool2d_forward(x, y, pr);
  const float* xp = x.f32();
  float* yp = y.f32();
  const float factor = average_factor(pr);
  for_each_window(
      g, [&](int64_t out_cell, const WindowTaps& taps) { average_into(yp + out_cell * g.c, xp, taps, g.c, factor); });
}

void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& pr) {
  const PoolGeometry g = OpChecks::cpu("avg_pool2d_backward").avg_pool2d_backward(dy, dx, pr);
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  const float factor = average_factor(pr);
  for_each_input(g, [&](int64_t in_cell, const CoveringWindows& windows) {
    average_into(dxp + in_cell * g.c, dyp, windows, g.c, factor);
  });
}

}  // namespace convnet::cpu
