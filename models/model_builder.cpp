#include "models/model_builder.h"

#include <map>

#include "core/base/error.h"
#include "core/layers/layer_factory.h"
#include "models/layer_spec.h"
#include "models/resnet.h"

namespace convnet {

std::vector<std::string> vgg_cfg(const std::string& name) {
  static const std::map<std::string, std::vector<std::string>> cfgs = {
      {"vgg11", {"64", "M", "128", "M", "256", "256", "M", "512", "512", "M", "512", "512", "M"}},
      {"vgg13", {"64", "64", "M", "128", "128", "M", "256", "256", "M", "512", "512", "M", "512", "512", "M"}},
      {"vgg16",
       {"64", "64", "M", "128", "128", "M", "256", "256", "256", "M", "512", "512", "512", "M", "512", "512", "512",
        "M"}},
      {"vgg19", {"64",  "64",  "M",   "128", "128", "M",   "256", "256", "256", "256", "M",
                 "512", "512", "512", "512", "M",   "512", "512", "512", "512", "M"}},
  };
  auto it = cfgs.find(name);
  if (it == cfgs.end()) throw ConfigError(fmt::format("model.name: '{}' is not a named VGG", name));
  return it->second;
}

namespace {

// Adds layers in order, numbering modules like a PyTorch nn.Sequential.
class SequentialWriter {
 public:
  SequentialWriter(Graph& graph, std::string prefix) : graph_(graph), prefix_(std::move(prefix)) {}
  void add(LayerSpec spec, const std::string& default_name) {
    graph_.add(make_layer(spec, default_name), fmt::format("{}.{}", prefix_, index_++));
  }
  // A module outside the numbered sequence ("classifier").
  void add_named(LayerSpec spec, const std::string& default_name, const std::string& module) {
    graph_.add(make_layer(spec, default_name), module);
  }

 private:
  Graph& graph_;
  std::string prefix_;
  int index_ = 0;
};

void add_vgg(const ModelConfig& model, const std::vector<std::string>& cfg, const Shape& example_shape, Graph& graph) {
  SequentialWriter features(graph, "features");
  int64_t h = example_shape[0], w = example_shape[1];
  int conv = 0, pool = 0;
  for (const std::string& item : cfg) {
    if (item == "M") {
      LayerSpec p = spec_of("max_pool");
      p.kernel = 2;
      p.stride = 2;
      features.add(p, fmt::format("pool{}", ++pool));
      h /= 2;
      w /= 2;
      continue;
    }
    LayerSpec c = spec_of("conv");
    c.out_channels = std::stoi(item);
    c.kernel = 3;
    c.padding = 1;
    c.bias = !model.batch_norm;  // BN's shift makes a conv bias redundant
    features.add(c, fmt::format("conv{}", ++conv));
    if (model.batch_norm) features.add(spec_of("batch_norm"), fmt::format("bn{}", conv));
    features.add(spec_of(model.activation), fmt::format("{}{}", model.activation, conv));
  }
  if (model.pool == "avg") {
    features.add(spec_of("global_avg_pool"), "global_pool");
  } else if (model.pool == "max" && (h > 1 || w > 1)) {
    LayerSpec p = spec_of("max_pool");
    p.kernel = static_cast<int>(std::max(h, w));
    p.stride = p.kernel;
    features.add(p, "global_pool");
  }
  SequentialWriter classifier(graph, "classifier");
  classifier.add_named(spec_of("flatten"), "flatten", "flatten");
  LayerSpec fc = spec_of("linear");
  fc.out_features = model.num_classes;
  if (model.dropout > 0) {
    LayerSpec d = spec_of("dropout");
    d.p = model.dropout;
    classifier.add(d, "dropout");
    classifier.add(fc, "fc");
  } else {
    classifier.add_named(fc, "fc", "classifier");
  }
}

void add_sequential(const ModelConfig& model, Graph& graph) {
  std::map<std::string, int> counts;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const LayerSpec& spec = model.layers[i];
    graph.add(make_layer(spec, fmt::format("{}{}", spec.type, ++counts[spec.type])), fmt::format("layers.{}", i),
              spec.from, spec.line);
  }
}

}  // namespace

void add_model_layers(const ModelConfig& model, const Shape& example_shape, Graph& graph) {
  CONVNET_CHECK(example_shape.size() == 3, "example shape {} is not HWC", shape_str(example_shape));
  if (model.name == "sequential") {
    add_sequential(model, graph);
  } else if (is_resnet(model.name)) {
    add_resnet(model, graph);
  } else if (model.name == "vgg") {
    add_vgg(model, model.cfg, example_shape, graph);
  } else {
    add_vgg(model, vgg_cfg(model.name), example_shape, graph);
  }
}

}  // namespace convnet
