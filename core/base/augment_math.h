// The index arithmetic of data augmentation as small constexpr functions on plain integers, so the
// CPU path (augment.cpp) and a GPU kernel compute exactly the same pixels. No std containers, no
// exceptions, no allocation: usable in device code (nvcc --expt-relaxed-constexpr), like hash64.
//
// Conventions, per axis of length `size`:
// - A random crop after padding by `pad` is a shift in [-pad, pad]: output coordinate o reads
//   source coordinate o + shift. Shift 0 is the identity.
// - Zero padding: a source coordinate outside [0, size) reads a zero (black) pixel, before
//   normalisation, as torchvision's RandomCrop(padding=pad) does.
// - Reflect padding mirrors without repeating the edge (numpy "reflect", torch ReflectionPad2d):
//   -1 -> 1, size -> size - 2.
// - A horizontal flip is applied to the cropped image: output x reads crop column width-1-x.
// - Cutout zeroes (after normalisation) the side x side square with top-left corner
//   (cy - side/2, cx - side/2), clipped to the image; the centre (cy, cx) is uniform over the image
//   (DeVries & Taylor 2017), so the square may stick out of the image.
#pragma once

#include <cstdint>

#include "core/base/rng.h"

namespace convnet {

enum class PadMode : uint8_t { zero, reflect };
// none; random: each image flipped with probability 1/2 each epoch; alternating (airbench): each
// image draws one flip bit for the whole run and is flipped the other way in every odd epoch, so
// epoch 0 is a random flip and every pair of epochs shows each image both ways.
enum class FlipMode : uint8_t { none, random, alternating };

// Mirror index i into [0, size) without repeating the edge; any i, any size >= 1.
constexpr int reflect_index(int i, int size) {
  if (size <= 1) return 0;
  const int period = 2 * (size - 1);
  i %= period;
  if (i < 0) i += period;
  return i < size ? i : period - i;
}

// Source coordinate for output coordinate `out` of a crop shifted by `shift`; -1 means "zero
// padding" (only with PadMode::zero).
constexpr int crop_source(int out, int shift, int size, PadMode mode) {
  const int i = out + shift;
  if (i >= 0 && i < size) return i;
  return mode == PadMode::reflect ? reflect_index(i, size) : -1;
}

// Column of the (cropped) image that output column x shows.
constexpr int flip_source(int x, int width, bool flip) {
  return flip ? width - 1 - x : x;
}

// Whether output pixel (y, x) lies in the cutout square of side `side` centred at (cy, cx).
constexpr bool in_cutout(int y, int x, int cy, int cx, int side) {
  const int y0 = cy - side / 2, x0 = cx - side / 2;
  return side > 0 && y >= y0 && y < y0 + side && x >= x0 && x < x0 + side;
}

// The random choices for one image. The default is the identity transform.
struct AugmentParams {
  int shift_y = 0, shift_x = 0;  // in [-pad, pad]
  bool flip = false;
  int cutout_y = 0, cutout_x = 0;  // centre of the cutout square (ignored when cutout side is 0)
};

// Uniform integer in [0, bound) from hash64(seed, counter) (multiply-shift; bias < 2^-32 * bound).
constexpr uint32_t hash_below(uint64_t seed, uint64_t counter, uint32_t bound) {
  return static_cast<uint32_t>(((hash64(seed, counter) >> 32) * bound) >> 32);
}

// Draws an image's parameters from its seed. Each choice uses its own counter, so turning one
// augmentation on or off does not change the others' draws.
constexpr AugmentParams draw_augment_params(uint64_t image_seed, int pad, bool flip, int cutout, int height,
                                            int width) {
  AugmentParams p;
  if (pad > 0) {
    const auto range = static_cast<uint32_t>(2 * pad + 1);
    p.shift_y = static_cast<int>(hash_below(image_seed, 0, range)) - pad;
    p.shift_x = static_cast<int>(hash_below(image_seed, 1, range)) - pad;
  }
  if (flip) p.flip = (hash64(image_seed, 2) >> 63) != 0;
  if (cutout > 0) {
    p.cutout_y = static_cast<int>(hash_below(image_seed, 3, static_cast<uint32_t>(height)));
    p.cutout_x = static_cast<int>(hash_below(image_seed, 4, static_cast<uint32_t>(width)));
  }
  return p;
}

// The per-image seed: a function of (seed, epoch, example index) only.
constexpr uint64_t augment_image_seed(uint64_t seed, int64_t epoch, int64_t example) {
  return hash64(hash64(hash64(seed, 0xA0A0A0A0ull), static_cast<uint64_t>(epoch)), static_cast<uint64_t>(example));
}

// FlipMode::alternating: the image's run-long flip bit, inverted in odd epochs.
constexpr bool alternating_flip(uint64_t seed, int64_t epoch, int64_t example) {
  const bool base = (hash64(hash64(seed, 0xF11Full), static_cast<uint64_t>(example)) >> 63) != 0;
  return base != ((epoch & 1) != 0);
}

// Everything that decides a training image's random transform, as plain values (device-usable).
struct AugmentSpec {
  uint64_t seed = 0;  // train.seed
  int pad = 0;        // crop shift range [-pad, pad]; 0 = no crop
  PadMode pad_mode = PadMode::zero;
  FlipMode flip = FlipMode::none;
  int cutout = 0;  // side of the cutout square; 0 = off
};

// The transform of dataset example `example` in `epoch`: what both the CPU loader and the GPU
// augmentation kernel apply. FlipMode::random draws from the image seed as draw_augment_params
// does, so the other choices do not depend on the flip mode.
constexpr AugmentParams augment_params_for(const AugmentSpec& spec, int64_t epoch, int64_t example, int height,
                                           int width) {
  AugmentParams p = draw_augment_params(augment_image_seed(spec.seed, epoch, example), spec.pad,
                                        spec.flip == FlipMode::random, spec.cutout, height, width);
  if (spec.flip == FlipMode::alternating) p.flip = alternating_flip(spec.seed, epoch, example);
  return p;
}

// The normalised value of raw pixel value v: (v/255 - mean) / std, computed the same way (same
// operations in the same order, no contraction possible) on the CPU and the GPU.
constexpr float normalize_pixel(uint8_t v, float mean, float std) {
  return (static_cast<float>(v) / 255.0f - mean) / std;
}

// Output element (y, x, c) of uint8 HWC image `src` (height x width x channels) transformed by p
// and normalised: the one definition of an augmented pixel, for the CPU loops and the GPU kernel.
constexpr float augmented_pixel(const uint8_t* src, int y, int x, int c, int height, int width, int channels,
                                const AugmentParams& p, PadMode mode, int cutout, float mean, float std) {
  if (in_cutout(y, x, p.cutout_y, p.cutout_x, cutout)) return 0.0f;
  const int sy = crop_source(y, p.shift_y, height, mode);
  const int sx = crop_source(flip_source(x, width, p.flip), p.shift_x, width, mode);
  const uint8_t v = (sy < 0 || sx < 0) ? uint8_t{0} : src[(static_cast<int64_t>(sy) * width + sx) * channels + c];
  return normalize_pixel(v, mean, std);
}

}  // namespace convnet
