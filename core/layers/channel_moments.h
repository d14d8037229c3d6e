// ChannelMoments: the batch statistics a convolution hands to the batchnorm that reads its output,
// so that the batchnorm skips its own passes over the activations (core/train/conv_bn_fusion.h
// pairs the two layers). In a train forward Conv2d writes them through
// Backend::conv2d_forward_with_moments and marks them fresh; the BatchNorm2d's next train forward
// takes them (Backend::batch_norm_forward_train_from_moments) and marks them used. An eval forward
// of the conv leaves nothing fresh, so a batchnorm never reads statistics of another batch.
#pragma once

#include "core/base/tensor.h"

namespace convnet {

struct ChannelMoments {
  Tensor mean, m2;     // f32 [C] on the pair's backend: mean and sum (y - mean)^2 per channel
  bool fresh = false;  // written by the conv's last forward, not yet taken by the batchnorm
};

}  // namespace convnet
