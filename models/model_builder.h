// Builds the layers of a Graph from config.model.
//
//   vgg11/13/16/19: the CIFAR-10 VGGs (3x3 conv, padding 1 [+ BN] + activation per number in the
//                   cfg list, 2x2 max-pool per "M"), then the final pool, flatten, [dropout,] Linear.
//   vgg:            the same from a user cfg list (model.cfg).
//   sequential:     model.layers, one layer per entry.
// Parameter names follow the equivalent PyTorch module: features.<i>.weight, classifier.weight
// for VGGs (torchvision-style nn.Sequential indices), layers.<i>.weight for sequential nets.
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
