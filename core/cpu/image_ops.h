// The data ops of the Backend (augment_batch, image_view) on the host: loops over augmented_pixel
// and the crop/flip index math of core/base/augment_math.h, which the GPU kernels share.
#pragma once

#include <cstdint>

#include "core/base/backend.h"

namespace convnet::cpu {

// Semantics of Backend::augment_batch. An index outside [0, M) throws convnet::Error.
void augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out, const AugmentBatchSpec& spec);
// Semantics of Backend::image_view.
void image_view(const Tensor& x, Tensor& y, const ImageView& view);

}  // namespace convnet::cpu
