#include "core/cpu/im2col.h"

#include <algorithm>
#include <cstring>

#include "core/cpu/parallel.h"

namespace convnet::cpu {

void im2col(const float* x, int64_t images, const ConvGeometry& g, float* cols, int64_t group) {
  const Conv2dParams& pr = g.params;
  const int64_t patch = g.patch(), gc = g.group_c();
  const size_t channel_bytes = static_cast<size_t>(gc) * sizeof(float);
  // One task per output row (image, p).
  parallel_for(0, images * g.p, 4, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.p, op = row % g.p;
      const float* x_img = x + img * g.h * g.w * g.c + group * gc;  // the group's first channel
      for (int64_t oq = 0; oq < g.q; ++oq) {
        float* dst = cols + (row * g.q + oq) * patch;
        const int64_t w0 = oq * pr.stride_w - pr.pad_w;
        const bool row_inside = g.groups == 1 && pr.dilation_w == 1 && w0 >= 0 && w0 + g.s <= g.w;
        for (int64_t r = 0; r < g.r; ++r) {
          float* dst_r = dst + r * g.s * gc;
          const int64_t ih = op * pr.stride_h - pr.pad_h + r * pr.dilation_h;
          if (ih < 0 || ih >= g.h) {
            std::memset(dst_r, 0, static_cast<size_t>(g.s) * channel_bytes);
            continue;
          }
          const float* x_row = x_img + ih * g.w * g.c;
          if (row_inside) {  // the whole (s, c) run is contiguous in NHWC (all channels: one group)
            std::memcpy(dst_r, x_row + w0 * g.c, static_cast<size_t>(g.s) * channel_bytes);
            continue;
          }
          for (int64_t s = 0; s < g.s; ++s) {
            const int64_t iw = w0 + s * pr.dilation_w;
            if (iw < 0 || iw >= g.w)
              std::memset(dst_r + s * gc, 0, channel_bytes);
            else
              std::memcpy(dst_r + s * gc, x_row + iw * g.c, channel_bytes);
          }
        }
      }
    }
  });
}

void col2im(const float* cols, int64_t images, const ConvGeometry& g, float* dx, int64_t group) {
  const Conv2dParams& pr = g.params;
  const int64_t patch = g.patch(), gc = g.group_c();
  // One task per input row (image, h); each dx element is written by exactly one task.
  parallel_for(0, images * g.h, 4, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t img = row / g.h, ih = row % g.h;
      const float* cols_img = cols + img * g.p * g.q * patch;
      for (int64_t iw = 0; iw < g.w; ++iw) {
        float* out = dx + (row * g.w + iw) * g.c + group * gc;
        std::fill(out, out + gc, 0.0f);
        for (int64_t r = 0; r < g.r; ++r) {
          // Output row op sees input row ih through kernel row r iff op * stride = ih + pad - r * dilation.
          const int64_t th = ih + pr.pad_h - r * pr.dilation_h;
          if (th < 0 || th % pr.stride_h != 0) continue;
          const int64_t op = th / pr.stride_h;
          if (op >= g.p) continue;
          for (int64_t s = 0; s < g.s; ++s) {
            const int64_t tw = iw + pr.pad_w - s * pr.dilation_w;
            if (tw < 0 || tw % pr.stride_w != 0) continue;
            const int64_t oq = tw / pr.stride_w;
            if (oq >= g.q) continue;
            const float* src = cols_img + (op * g.q + oq) * patch + (r * g.s + s) * gc;
            for (int64_t c = 0; c < gc; ++c) out[c] += src[c];
          }
        }
      }
    }
  });
}

}  // namespace convnet::cpu
