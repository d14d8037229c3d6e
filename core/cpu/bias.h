// The bias of conv and linear layers over a row-major [rows, channels] matrix (NHWC activations,
// or [N, out] features): adding it in the forward pass, and its gradient, the column sums of dy.
#pragma once

#include <cstdint>

namespace convnet::cpu {

// y[r, k] += bias[k] for every row r of y [rows, channels].
void add_bias(float* y, int64_t rows, int64_t channels, const float* bias);

// dbias[k] = sum over the rows of dy [rows, channels] of dy[r, k], summed in double through
// column_sums (the same bits under any thread count) and rounded to float once.
void bias_gradient(const float* dy, int64_t rows, int64_t channels, float* dbias);

}  // namespace convnet::cpu
