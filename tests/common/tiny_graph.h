// A tiny sequential net for graph-level tests (checkpoints, weight averaging): conv 3->4 (3x3,
// pad 1) [-> batch_norm] -> relu -> flatten -> linear 64->5, on 4x4x3 inputs, built on `backend`
// with parameters from Rng(seed). Header-only: the tests that use it link the model builder.
#pragma once

#include <cstdint>
#include <string>

#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/train/graph.h"
#include "models/model_builder.h"

namespace convnet::testing {

inline LayerSpec layer_spec(const std::string& type) {
  LayerSpec s;
  s.type = type;
  return s;
}

// The tiny net planned (Graph::plan: shapes known, nothing allocated).
inline void plan_tiny_graph(Graph& graph, Backend& backend, bool batch_norm) {
  ModelConfig m;
  m.name = "sequential";
  LayerSpec conv = layer_spec("conv");
  conv.out_channels = 4;
  conv.kernel = 3;
  conv.padding = 1;
  LayerSpec fc = layer_spec("linear");
  fc.out_features = 5;
  m.layers = {conv};
  if (batch_norm) m.layers.push_back(layer_spec("batch_norm"));
  m.layers.insert(m.layers.end(), {layer_spec("relu"), layer_spec("flatten"), fc});
  add_model_layers(m, {4, 4, 3}, graph);
  graph.plan({4, 4, 3}, backend);
}

inline void build_tiny_graph(Graph& graph, Backend& backend, uint64_t seed, bool batch_norm) {
  plan_tiny_graph(graph, backend, batch_norm);
  Rng rng(seed);
  graph.allocate_parameters(rng);
}

}  // namespace convnet::testing
