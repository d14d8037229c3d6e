// A synthetic image classification set for tests and smoke runs: no files needed, generated in
// milliseconds, yet a small conv net must actually learn spatial features to classify it.
#pragma once

#include <cstdint>

#include "datasets/image_dataset.h"

namespace convnet {

// `size` images of image_size x image_size x `channels` with labels exactly balanced over
// `num_classes` (counts differ by at most one) in a seed-shuffled order. Class c is a sinusoidal
// grating at angle 180*c/num_classes degrees with a class-specific colour, drawn at a random
// phase and slightly jittered frequency, plus Gaussian pixel noise (std `noise` in 0-255 units).
// A small conv net learns it to >95% in a few epochs. Deterministic: the same arguments give the
// same bytes on every platform (each image draws from Rng(hash64(seed, index))).
// Throws ConfigError for a non-positive size, image size, class count or channel count.
ImageDataset make_synthetic(int64_t size, int image_size, int num_classes, uint64_t seed, int channels = 3,
                            float noise = 12.0f);

}  // namespace convnet
