// im2col / col2im for NHWC activations and KRSC filters.
//
// The column matrix of a batch of `images` has one row per output pixel (n, p, q), in NHWC order,
// and R*S*C columns: the (r, s, c) input patch that output pixel sees, with zeros where the
// dilated window reaches into the padding. Row-major, so it multiplies KRSC filters ([K, R*S*C])
// directly. A grouped convolution has one column matrix per group: its R*S*C/groups columns read
// only the group's channels [group * C/groups, (group + 1) * C/groups), and multiply the group's
// filters ([K/groups, R*S*C/groups]).
#pragma once

#include <cstdint>

#include "core/base/op_checks.h"

namespace convnet::cpu {

// True when the column matrix equals the input itself (1x1 filters, stride 1, no padding).
inline bool identity_columns(const ConvGeometry& g) {
  const Conv2dParams& p = g.params;
  return g.r == 1 && g.s == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
}

// cols[images * P * Q, g.patch()] from x[images, H, W, C], for group `group` (g.n is ignored;
// `images` counts).
void im2col(const float* x, int64_t images, const ConvGeometry& g, float* cols, int64_t group = 0);

// dx[images, H, W, C] = the sum of every column entry that im2col would have read from each input
// element (the adjoint of im2col). Overwrites group `group`'s channels of dx and no others;
// gathers per input pixel in a fixed (r, s) order, so the result is deterministic under any
// thread count.
void col2im(const float* cols, int64_t images, const ConvGeometry& g, float* dx, int64_t group = 0);

}  // namespace convnet::cpu
