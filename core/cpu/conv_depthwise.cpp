#include "core/cpu/conv_depthwise.h"

#include <algorithm>
#include <vector>

#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {

// w [K, R*S] -> [R*S, K], so each tap's filters are contiguous like an NHWC pixel's channels.
const float* tap_major_filters(const float* w, const ConvGeometry& g, Workspace& ws) {
  const int64_t taps = g.r * g.s;
  float* wt = ws.floats(static_cast<size_t>(taps * g.k));
  for (int64_t k = 0; k < g.k; ++k)
    for (int64_t t = 0; t < taps; ++t) wt[t * g.k + k] = w[k * taps + t];
  return wt;
}

// The input row of output row `o` through kernel row `r` (or column, with the _w params), or -1
// in the padding.
int64_t input_index(int64_t o, int64_t r, int64_t stride, int64_t pad, int64_t dilation, int64_t extent) {
  const int64_t i = o * stride - pad + r * dilation;
  return i >= 0 && i < extent ? i : -1;
}

// The output row that sees input row `i` through kernel row `r`, or -1 when none does.
int64_t output_index(int64_t i, int64_t r, int64_t stride, int64_t pad, int64_t dilation, int64_t extent) {
  const int64_t t = i + pad - r * dilation;
  if (t < 0 || t % stride != 0 || t / stride >= extent) return -1;
  return t / stride;
}

}  // namespace

void depthwise_forward(const float* x, const float* w, float* y, const ConvGeometry& g, Workspace& ws) {
  const Conv2dParams& pr = g.params;
  const int64_t m = g.group_k();  // filters per input channel
  const float* wt = tap_major_filters(w, g, ws);
  // One task per output row (image, p); each y element is written by exactly one task.
  parallel_for(0, g.n * g.p, 1, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.p, op = row % g.p;
      const float* x_img = x + img * g.h * g.w * g.c;
      for (int64_t oq = 0; oq < g.q; ++oq) {
        float* out = y + (row * g.q + oq) * g.k;
        std::fill(out, out + g.k, 0.0f);
        for (int64_t r = 0; r < g.r; ++r) {
          const int64_t ih = input_index(op, r, pr.stride_h, pr.pad_h, pr.dilation_h, g.h);
          if (ih < 0) continue;
          for (int64_t s = 0; s < g.s; ++s) {
            const int64_t iw = input_index(oq, s, pr.stride_w, pr.pad_w, pr.dilation_w, g.w);
            if (iw < 0) continue;
            const float* in = x_img + (ih * g.w + iw) * g.c;
            const float* wk = wt + (r * g.s + s) * g.k;
            if (m == 1) {
              for (int64_t k = 0; k < g.k; ++k) out[k] += in[k] * wk[k];
            } else {
              for (int64_t c = 0; c < g.c; ++c)
                for (int64_t j = 0; j < m; ++j) out[c * m + j] += in[c] * wk[c * m + j];
            }
          }
        }
      }
    }
  });
}

void depthwise_backward_data(const float* dy, const float* w, float* dx, const ConvGeometry& g, Workspace& ws) {
  const Conv2dParams& pr = g.params;
  const int64_t m = g.group_k();
  const float* wt = tap_major_filters(w, g, ws);
  // One task per input row (image, h), summing over the taps in a fixed (r, s) order.
  parallel_for(0, g.n * g.h, 1, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.h, ih = row % g.h;
      for (int64_t iw = 0; iw < g.w; ++iw) {
        float* out = dx + (row * g.w + iw) * g.c;
        std::fill(out, out + g.c, 0.0f);
        for (int64_t r = 0; r < g.r; ++r) {
          const int64_t op = output_index(ih, r, pr.stride_h, pr.pad_h, pr.dilation_h, g.p);
          if (op < 0) continue;
          for (int64_t s = 0; s < g.s; ++s) {
            const int64_t oq = output_index(iw, s, pr.stride_w, pr.pad_w, pr.dilation_w, g.q);
            if (oq < 0) continue;
            const float* d = dy + ((img * g.p + op) * g.q + oq) * g.k;
            const float* wk = wt + (r * g.s + s) * g.k;
            if (m == 1) {
              for (int64_t c = 0; c < g.c; ++c) out[c] += d[c] * wk[c];
            } else {
              for (int64_t c = 0; c < g.c; ++c)
                for (int64_t j = 0; j < m; ++j) out[c] += d[c * m + j] * wk[c * m + j];
            }
          }
        }
      }
    }
  });
}

void depthwise_backward_filter(const float* x, const float* dy, float* dw, const ConvGeometry& g) {
  const Conv2dParams& pr = g.params;
  const int64_t m = g.group_k(), taps = g.r * g.s;
  constexpr int64_t kBlock = 64;  // filters per task
  const int64_t blocks = (g.k + kBlock - 1) / kBlock;
  // One task per (tap, block of filters): it owns those dw elements and sums every output pixel
  // into them in a fixed order, one partial sum per output row (shorter fp32 running sums).
  parallel_for(0, taps * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> total(kBlock), partial(kBlock);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / blocks, k0 = i % blocks * kBlock, kn = std::min(kBlock, g.k - k0);
      const int64_t r = t / g.s, s = t % g.s;
      std::fill(total.begin(), total.end(), 0.0f);
      for (int64_t img = 0; img < g.n; ++img) {
        for (int64_t op = 0; op < g.p; ++op) {
          const int64_t ih = input_index(op, r, pr.stride_h, pr.pad_h, pr.dilation_h, g.h);
          if (ih < 0) continue;
          std::fill(partial.begin(), partial.end(), 0.0f);
          for (int64_t oq = 0; oq < g.q; ++oq) {
            const int64_t iw = input_index(oq, s, pr.stride_w, pr.pad_w, pr.dilation_w, g.w);
            if (iw < 0) continue;
            const float* d = dy + ((img * g.p + op) * g.q + oq) * g.k + k0;
            const float* in = x + ((img * g.h + ih) * g.w + iw) * g.c;
            if (m == 1) {
              for (int64_t j = 0; j < kn; ++j) partial[j] += d[j] * in[k0 + j];
            } else {
              for (int64_t j = 0; j < kn; ++j) partial[j] += d[j] * in[(k0 + j) / m];
            }
          }
          for (int64_t j = 0; j < kn; ++j) total[j] += partial[j];
        }
      }
      for (int64_t j = 0; j < kn; ++j) dw[(k0 + j) * taps + t] = total[j];
    }
  });
}

}  // namespace convnet::cpu
