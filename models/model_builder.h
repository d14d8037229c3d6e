// Builds the layers of a Graph from config.model.
//
//   vgg11/13/16/19: the CIFAR-10 VGGs (3x3 conv, padding 1 [+ BN] + activation per number in the
//                   cfg list, 2x2 max-pool per "M"), then the final pool, flatten, [dropout,] Linear.
//   vgg:            the same from a user cfg list (model.cfg).
//   resnet18/34:    kuangliu/pytorch-cifar's ResNets: 3x3 stem conv 64 + BN + ReLU (no max-pool),
//                   BasicBlocks [2,2,2,2] / [3,4,6,3] at widths 64/128/256/512 with strides
//                   1/2/2/2, projection shortcuts, global average pool, [dropout,] linear.
//   resnet20/32/44/56/110/1202: He et al. 2016's CIFAR ResNets (akamaster/pytorch_resnet_cifar10):
//                   stem 16, (depth - 2) / 6 BasicBlocks per stage at widths 16/32/64, the paper's
//                   parameter-free option A shortcut (model.shortcut: pad).
//   resnet:         your own stack of BasicBlocks: model.widths (channels per stage; the stem
//                   conv has widths[0]) and model.blocks (blocks per stage), e.g.
//                     model: {name: resnet, widths: [32, 64, 128], blocks: [2, 2, 2], shortcut: pad}
//                   The first stage keeps the resolution, every later one halves it (its first
//                   block has stride 2). Shortcuts are projections unless model.shortcut is pad
//                   (which needs widths that never decrease).
//   sequential:     model.layers, one layer per entry.
// model.shortcut (auto | projection | pad) overrides any ResNet's own shortcut; model.activation
// (relu | gelu) and model.dropout apply to the VGGs and ResNets. models/resnet.h has the details.
// Parameter names follow the equivalent PyTorch module: features.<i>.weight, classifier.weight
// for VGGs (torchvision-style nn.Sequential indices), the repositories' module names for ResNets
// (conv1.weight, layer1.0.bn1.running_mean, layer2.0.shortcut.0.weight, linear.weight), and
// layers.<i>.weight for sequential nets.
#pragma once

#include <string>
#include <vector>

#include "core/base/tensor.h"
#include "core/config/config.h"
#include "core/train/graph.h"

namespace convnet {

// The cfg list of a named VGG ("vgg11" ...); throws ConfigError for other names.
std::vector<std::string> vgg_cfg(const std::string& name);

// Adds the model's layers to `graph` (not yet built). example_shape is {H, W, C}.
void add_model_layers(const ModelConfig& model, const Shape& example_shape, Graph& graph);

}  // namespace convnet
