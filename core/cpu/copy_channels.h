// dst[..., dst_offset + c] = src[..., src_offset + c] (semantics of Backend::copy_channels): the
// concat layer's forward (each input into its channel range) and backward (each range back out).
#pragma once

#include <cstdint>

#include "core/base/tensor.h"

namespace convnet::cpu {

void copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset, int64_t channels);

}  // namespace convnet::cpu
