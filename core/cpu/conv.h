// 2-D convolution on the CPU: im2col + sgemm, processed in chunks of images so the column buffer
// stays within kConvColumnsBudgetBytes; a grouped convolution runs one im2col + sgemm per group,
// a depthwise one the direct loops of conv_depthwise.h. Shapes and semantics are those of
// Backend::conv2d_* (w [K, R, S, C/groups]).
#pragma once

#include <cstdint>

#include "core/base/backend.h"
#include "core/cpu/im2col.h"
#include "core/cpu/workspace.h"

namespace convnet::cpu {

inline constexpr int64_t kConvColumnsBudgetBytes = int64_t{64} << 20;

// The geometry of x [N,H,W,C] and w [K,R,S,C/groups] (f32, host), validated by OpChecks for `op`
// (throws convnet::Error when a shape is inconsistent or the output would be empty).
ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p, const char* op);

// Images per im2col chunk: as many as fit the budget, at least one.
int64_t conv_chunk_images(const ConvGeometry& g);

// y [N,P,Q,K] = conv(x, w) (+ bias [K]).
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, const Conv2dParams& p,
                    Workspace& ws);
// dx [N,H,W,C] = conv^T(dy, w).
void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p, Workspace& ws);
// dw [K,R,S,C/groups] = sum over pixels of dy x patch; dbias [K] = column sums of dy (when non-null).
void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias, const Conv2dParams& p,
                            Workspace& ws);

}  // namespace convnet::cpu
