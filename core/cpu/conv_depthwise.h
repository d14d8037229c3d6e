// Depthwise convolution (groups == C: every filter reads a single input channel) on the CPU, by
// direct loops. The grouped im2col + GEMM path would copy one float per tap and run C GEMMs whose
// reduction is only R*S long with K/C output columns, so nearly all its time would go to call
// overhead; these loops walk NHWC pixels with the channel innermost, which vectorises across
// channels. Shapes and semantics are those of Backend::conv2d_* with a geometry is_depthwise()
// accepts: x [N,H,W,C], w [K,R,S,1], y [N,P,Q,K], filter k reading channel k / (K/C).
#pragma once

#include "core/base/op_checks.h"
#include "core/cpu/workspace.h"

namespace convnet::cpu {

// Depthwise: more than one group, each with a single input channel (any multiplier K/C).
inline bool is_depthwise(const ConvGeometry& g) {
  return g.groups > 1 && g.group_c() == 1;
}

// y = conv(x, w), no bias. `ws` holds the filters transposed to [R*S, K].
void depthwise_forward(const float* x, const float* w, float* y, const ConvGeometry& g, Workspace& ws);
// dx = conv^T(dy, w), gathered per input pixel (deterministic). `ws` as for the forward.
void depthwise_backward_data(const float* dy, const float* w, float* dx, const ConvGeometry& g, Workspace& ws);
// dw = sum over output pixels of dy x input; each element summed by one task in a fixed order.
void depthwise_backward_filter(const float* x, const float* dy, float* dw, const ConvGeometry& g);

}  // namespace convnet::cpu
