// Resizing a decoded RGB image to a model's input size, for `convnet predict` on images of any
// size. Separable, per axis: when an axis shrinks, area averaging (each output pixel the mean of
// the input it covers, pixels weighted by the fraction covered, as OpenCV's INTER_AREA), so a photo
// shrunk to 32x32 does not alias; when it grows (or keeps its size), bilinear with half-pixel
// centres (PyTorch's align_corners=False, clamped at the edges). The same size is the identity.
#pragma once

#include <vector>

#include "datasets/image_codec.h"

namespace convnet {

// [height, width, 3] floats in [0, 255].
std::vector<float> resize_rgb(const DecodedImage& image, int height, int width);

// The weights one output index `o` of an axis of `out` pixels takes from an axis of `in`
// pixels: (input index, weight) pairs summing to 1. Exposed for the tests.
struct ResampleTap {
  int index;
  double weight;
};
std::vector<ResampleTap> resample_taps(int in, int out, int o);

}  // namespace convnet
