// Argument validation shared by the cpu ops. Every failure throws convnet::Error (via CONVNET_CHECK)
// naming the op and the argument, e.g. "conv2d_forward: y has shape [2, 4, 4, 8], expected [2, 4, 4, 16]".
#pragma once

#include "core/base/tensor.h"

namespace convnet::cpu {

// t is defined, lives on the host and has the given dtype.
void check_tensor(const Tensor& t, const char* op, const char* name, DType dtype = DType::f32);
// check_tensor plus an exact shape.
void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* name, DType dtype = DType::f32);
// check_tensor plus a rank.
void check_rank(const Tensor& t, int rank, const char* op, const char* name, DType dtype = DType::f32);

}  // namespace convnet::cpu
