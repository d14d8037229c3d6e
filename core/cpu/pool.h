// Max and average 2-D pooling on NHWC tensors (semantics of Backend::*_pool2d_*).
// Backward passes gather per input pixel over the windows that contain it, in a fixed order, so
// overlapping windows are handled without races and results do not depend on the thread count.
#pragma once

#include "core/base/backend.h"

namespace convnet::cpu {

// x [N,H,W,C] -> y [N,P,Q,C] and argmax (i32, window-local r * kernel_w + s of the first maximum;
// a NaN in the window wins, like PyTorch). Padding never wins; requires pad < kernel per axis.
void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p);
// dx [N,H,W,C]: dy routed to the argmax of each window, summed where windows overlap.
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dParams& p);
// Window mean with padding counted as zeros (divisor kernel_h * kernel_w).
void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dParams& p);
void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dParams& p);

}  // namespace convnet::cpu
