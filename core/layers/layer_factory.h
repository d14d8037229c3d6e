// make_layer: builds the layer a config's model.layers entry describes.
#pragma once

#include <memory>
#include <string>

#include "core/config/config.h"
#include "core/layers/layer.h"

namespace convnet {

// The LayerSpec::type values make_layer() accepts, in documentation order:
// conv, max_pool, avg_pool, global_avg_pool, relu, gelu, batch_norm, dropout, flatten, linear, scale.
const std::vector<std::string>& layer_types();

// A new, unconfigured layer named spec.name (or `default_name` when that is empty), built from the
// fields that apply to spec.type (pool kernel/stride defaults are the config loader's job).
// Throws ConfigError for an unknown type (listing the valid ones, with the config line when
// known) and for invalid hyperparameters (e.g. dropout p = 1), naming the layer.
std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& default_name);

}  // namespace convnet
