// Residual nets of BasicBlocks for CIFAR-sized images (see model_builder.h for the config side).
//
//   stem:   conv1 3x3 (stem width, stride 1, pad 1, no bias) -> bn1 -> relu; no max-pool
//   stages: layer1 .. layerS, stage s with blocks[s] BasicBlocks of widths[s] channels; the first
//           block of every stage but the first has stride 2
//   block:  conv1 3x3 (stride s) -> bn1 -> relu1 -> conv2 3x3 -> bn2, plus the shortcut, -> add -> relu2
//   head:   global average pool -> [dropout ->] linear
// The shortcut is the block's input unchanged when the block keeps the shape; when the stride is 2
// or the width changes it is
//   projection: shortcut.0 1x1 conv (stride s, no bias) -> shortcut.1 BN (kuangliu/pytorch-cifar)
//   pad:        x[:, :, ::s, ::s] with zero channels on both sides, parameter-free (He et al.
//               2016's option A; PadChannels), as akamaster/pytorch_resnet_cifar10.
// Layers are named like the PyTorch modules ("layer2.0.shortcut.0"), which are also their
// parameters' prefixes, so checkpoints load into those repositories' models with strict=True.
// The activation is model.activation (relu, or gelu: then the layers are named gelu, gelu1, ...).
#pragma once

#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/train/graph.h"

namespace convnet {

enum class ResNetShortcut { projection, pad };

struct ResNetSpec {
  int stem_width = 0;
  std::vector<int> widths;  // channels per stage
  std::vector<int> blocks;  // BasicBlocks per stage
  ResNetShortcut shortcut = ResNetShortcut::projection;
};

// True for the names add_resnet builds: resnet18, resnet34 (kuangliu: widths 64..512, projection
// shortcuts), resnet20/32/44/56/110/1202 (He et al. 2016: widths 16/32/64, (depth - 2) / 6 blocks per
// stage, pad shortcuts) and resnet (model.widths, model.blocks; projection shortcuts).
bool is_resnet(const std::string& name);

// The architecture model.name (and for `resnet` model.widths and model.blocks) describes, with
// model.shortcut overriding the net's own shortcut unless it is `auto`. Throws ConfigError for a
// name that is not a ResNet and for widths and blocks that are empty or of different lengths.
ResNetSpec resnet_spec(const ModelConfig& model);

// Adds the layers of resnet_spec(model) to `graph`. A pad shortcut needs widths that never
// decrease (PadChannels then throws ConfigError naming the block).
void add_resnet(const ModelConfig& model, Graph& graph);

}  // namespace convnet
