// Fusing convolution -> training-mode batchnorm: the batchnorm takes its batch statistics from the
// convolution (ChannelMoments, core/layers/channel_moments.h) instead of two passes of its own over
// the activations. On the cuda backend in tf32 and bf16 the statistics come from the v4 kernel's
// epilogue, so the pair reads the conv output once (the normalization) instead of three times.
// Results agree with the unfused pair to rounding: the statistics are the same sums, taken in
// another order (and on cuda from fp32 sums of y and y^2).
#pragma once

#include <string>

#include "core/train/graph.h"

namespace convnet {

enum class ConvBnFusion {
  automatic,  // where the pair's backend says it is faster (Backend::fuses_conv_batch_norm)
  always,     // every eligible pair, on any backend (to check one against the other)
  never,
};
// "auto" | "on" | "off" (train.conv_bn_fusion); ConfigError naming the key otherwise.
ConvBnFusion parse_conv_bn_fusion(const std::string& name);

// Pairs every conv2d whose output only a batch_norm reads, when both run on one backend (and, for
// `automatic`, that backend fuses them), after graph.plan(). Returns the number of pairs fused.
int fuse_conv_batch_norm(Graph& graph, ConvBnFusion fusion);

}  // namespace convnet
