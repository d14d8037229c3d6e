#include "convnet/model_graph.h"

#include <fmt/format.h>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/train/conv_bn_fusion.h"
#include "core/train/memory_estimate.h"
#include "models/model_builder.h"

namespace convnet {

Shape example_shape(const DataConfig& data) {
  if (data.dataset == "synthetic") return {data.synthetic_image_size, data.synthetic_image_size, 3};
  return {32, 32, 3};
}

Shape model_input_shape(const CheckpointSummary& summary, const DataConfig& data) {
  return summary.input_shape.empty() ? example_shape(data) : summary.input_shape;
}

void build_graph(const Config& config, const Shape& example, Backends& backends, Graph& graph) {
  try {
    add_model_layers(config.model, example, graph);
    graph.plan(example, backends.main(), backends.layer_overrides());
    // Synchronized batchnorm needs every rank's statistics, which one conv's are not.
    fuse_conv_batch_norm(
        graph, config.model.sync_batch_norm ? ConvBnFusion::never : parse_conv_bn_fusion(config.train.conv_bn_fusion));
    check_host_memory(graph, config);  // before any of it is allocated
    Rng rng(config.train.seed);
    graph.allocate_parameters(rng);
  } catch (const ConfigError& e) {
    if (config.source.empty()) throw;
    throw ConfigError(fmt::format("{}: {}", config.source, e.what()));  // the model's problems name the file too
  }
}

}  // namespace convnet
