// A config's model as a built Graph: the input shape its data produces and the layers of its model
// section on its backends. Shared by the CLI and by convnet::Model (convnet/model.h).
#pragma once

#include "convnet/backends.h"
#include "core/base/tensor.h"
#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/graph.h"

namespace convnet {

// The per-example input shape {H, W, C} the data config produces.
Shape example_shape(const DataConfig& data);

// The input {H, W, C} the model of a checkpoint was built for: the shape it records
// (convnet.input_shape), else (a file that records none) what its data config produces. Image
// trees of another size than 32x32 make the two differ.
Shape model_input_shape(const CheckpointSummary& summary, const DataConfig& data);

// Adds the model's layers and builds the graph (parameters initialized from train.seed). The
// model's ConfigErrors name config.source when it has one.
void build_graph(const Config& config, const Shape& example, Backends& backends, Graph& graph);

}  // namespace convnet
