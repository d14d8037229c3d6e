#include "models/resnet.h"

#include <fmt/format.h>

#include <map>
#include <memory>

#include "core/base/error.h"
#include "core/layers/layer_factory.h"
#include "core/layers/pad_channels.h"
#include "models/layer_spec.h"

namespace convnet {

namespace {

const std::map<std::string, ResNetSpec>& named_resnets() {
  static const std::map<std::string, ResNetSpec> nets = [] {
    std::map<std::string, ResNetSpec> m;
    const std::vector<int> wide = {64, 128, 256, 512};
    m["resnet18"] = {64, wide, {2, 2, 2, 2}, ResNetShortcut::projection};
    m["resnet34"] = {64, wide, {3, 4, 6, 3}, ResNetShortcut::projection};
    for (int depth : {20, 32, 44, 56, 110, 1202}) {
      const int n = (depth - 2) / 6;  // two convs per block, three stages, plus the stem conv and the linear
      m[fmt::format("resnet{}", depth)] = {16, {16, 32, 64}, {n, n, n}, ResNetShortcut::pad};
    }
    return m;
  }();
  return nets;
}

// Adds layers named after their PyTorch modules; each reads the previous layer unless told otherwise.
class ResNetWriter {
 public:
  ResNetWriter(Graph& graph, std::string activation) : graph_(graph), activation_(std::move(activation)) {}

  // Returns the layer's name, for later `from` references.
  std::string add(const LayerSpec& spec, const std::string& name, std::vector<std::string> from = {}) {
    graph_.add(make_layer(spec, name), name, std::move(from));
    return name;
  }
  std::string add(std::unique_ptr<Layer> layer, std::vector<std::string> from = {}) {
    std::string name = layer->name();
    graph_.add(std::move(layer), name, std::move(from));
    return name;
  }
  // 3x3 (pad 1) or 1x1 (pad 0) convolution without bias: a BN follows every one.
  std::string conv(const std::string& name, int width, int kernel, int stride, std::vector<std::string> from = {}) {
    LayerSpec c = spec_of("conv");
    c.out_channels = width;
    c.kernel = kernel;
    c.stride = stride;
    c.padding = kernel / 2;
    c.bias = false;
    return add(c, name, std::move(from));
  }
  std::string batch_norm(const std::string& name) { return add(spec_of("batch_norm"), name); }
  // "<prefix>relu<suffix>" (or gelu): the activation's name says which it is.
  std::string activation(const std::string& prefix, const std::string& suffix = "") {
    return add(spec_of(activation_), prefix + activation_ + suffix);
  }

  // One BasicBlock reading `input` (in_width channels); returns its output's name.
  std::string basic_block(const std::string& prefix, const std::string& input, int in_width, int width, int stride,
                          ResNetShortcut shortcut) {
    conv(prefix + "conv1", width, 3, stride, {input});
    batch_norm(prefix + "bn1");
    activation(prefix, "1");
    conv(prefix + "conv2", width, 3, 1);
    const std::string residual = batch_norm(prefix + "bn2");
    std::string skip = input;
    if (stride != 1 || in_width != width) {
      if (shortcut == ResNetShortcut::projection) {
        conv(prefix + "shortcut.0", width, 1, stride, {input});
        skip = batch_norm(prefix + "shortcut.1");
      } else {
        // akamaster pads planes // 4 on each side, i.e. half the added channels when the width doubles.
        const int added = width - in_width;
        skip = add(std::make_unique<PadChannels>(prefix + "shortcut", stride, added / 2, added - added / 2), {input});
      }
    }
    add(spec_of("add"), prefix + "add", {residual, skip});
    return activation(prefix, "2");
  }

 private:
  Graph& graph_;
  std::string activation_;
};

}  // namespace

bool is_resnet(const std::string& name) {
  return name == "resnet" || named_resnets().count(name) > 0;
}

ResNetSpec resnet_spec(const ModelConfig& model) {
  ResNetSpec spec;
  if (model.name == "resnet") {
    if (model.widths.empty() || model.widths.size() != model.blocks.size())
      throw ConfigError(
          fmt::format("model.widths and model.blocks: a resnet needs one width and one block count per "
                      "stage, got {} widths and {} block counts",
                      model.widths.size(), model.blocks.size()));
    spec = {model.widths.front(), model.widths, model.blocks, ResNetShortcut::projection};
  } else {
    const auto it = named_resnets().find(model.name);
    if (it == named_resnets().end()) throw ConfigError(fmt::format("model.name: '{}' is not a ResNet", model.name));
    spec = it->second;
  }
  if (model.shortcut == "projection") spec.shortcut = ResNetShortcut::projection;
  if (model.shortcut == "pad") spec.shortcut = ResNetShortcut::pad;
  return spec;
}

void add_resnet(const ModelConfig& model, Graph& graph) {
  const ResNetSpec spec = resnet_spec(model);
  ResNetWriter net(graph, model.activation);
  net.conv("conv1", spec.stem_width, 3, 1);
  net.batch_norm("bn1");
  std::string x = net.activation("");
  int in_width = spec.stem_width;
  for (size_t s = 0; s < spec.widths.size(); ++s) {
    for (int b = 0; b < spec.blocks[s]; ++b) {
      const int stride = s > 0 && b == 0 ? 2 : 1;
      x = net.basic_block(fmt::format("layer{}.{}.", s + 1, b), x, in_width, spec.widths[s], stride, spec.shortcut);
      in_width = spec.widths[s];
    }
  }
  net.add(spec_of("global_avg_pool"), "pool");
  if (model.dropout > 0) {
    LayerSpec d = spec_of("dropout");
    d.p = model.dropout;
    net.add(d, "dropout");
  }
  LayerSpec fc = spec_of("linear");
  fc.out_features = model.num_classes;
  net.add(fc, "linear");
}

}  // namespace convnet
