// im2col / col2im for NHWC activations and KRSC filters.
//
// The column matrix of a batch of `images` has one row per output pixel (n, p, q), in NHWC order,
// and R*S*C columns: the (r, s, c) input patch that output pixel sees, with zeros where the
// dilated window reaches into the padding. Row-major, so it multiplies KRSC filters ([K, R*S*C])
// directly.
#pragma once

#include <cstdint>

#include "core/base/backend.h"

namespace convnet::cpu {

struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input
  int64_t k = 0, r = 0, s = 0;         // filters
  int64_t p = 0, q = 0;                // output
  Conv2dParams params;
  int64_t patch() const { return r * s * c; }
  // True when the column matrix equals the input itself (1x1, stride 1, no padding).
  bool identity_columns() const {
    return r == 1 && s == 1 && params.stride_h == 1 && params.stride_w == 1 && params.pad_h == 0 && params.pad_w == 0;
  }
};

// cols[images * P * Q, R * S * C] from x[images, H, W, C] (g.n is ignored; `images` counts).
void im2col(const float* x, int64_t images, const ConvGeometry& g, float* cols);

// dx[images, H, W, C] = the sum of every column entry that im2col would have read from each input
// element (the adjoint of im2col). Overwrites dx; gathers per input pixel in a fixed (r, s)
// order, so the result is deterministic under any thread count.
void col2im(const float* cols, int64_t images, const ConvGeometry& g, float* dx);

}  // namespace convnet::cpu
