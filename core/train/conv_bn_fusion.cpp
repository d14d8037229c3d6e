#include "core/train/conv_bn_fusion.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <vector>

#include "core/base/error.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"

namespace convnet {

ConvBnFusion parse_conv_bn_fusion(const std::string& name) {
  if (name == "auto") return ConvBnFusion::automatic;
  if (name == "on") return ConvBnFusion::always;
  if (name == "off") return ConvBnFusion::never;
  throw ConfigError(fmt::format("train.conv_bn_fusion: expected auto, on or off, got '{}'", name));
}

int fuse_conv_batch_norm(Graph& graph, ConvBnFusion fusion) {
  if (fusion == ConvBnFusion::never) return 0;
  std::vector<int> readers(graph.size(), 0);
  for (size_t i = 0; i < graph.size(); ++i)
    for (int from : graph.layer_inputs(i))
      if (from != Graph::kGraphInput) ++readers[static_cast<size_t>(from)];

  int fused = 0;
  for (size_t i = 0; i < graph.size(); ++i) {
    auto* bn = dynamic_cast<BatchNorm2d*>(&graph.layer(i));
    if (bn == nullptr || graph.layer_inputs(i).size() != 1) continue;
    const int from = graph.layer_inputs(i)[0];
    if (from == Graph::kGraphInput || readers[static_cast<size_t>(from)] != 1) continue;
    const auto c = static_cast<size_t>(from);
    auto* conv = dynamic_cast<Conv2d*>(&graph.layer(c));
    Backend& backend = graph.layer_backend(i);
    // One backend: the statistics are its device's tensors, and no copy stands between the two.
    if (conv == nullptr || &graph.layer_backend(c) != &backend) continue;
    if (fusion == ConvBnFusion::automatic && !backend.fuses_conv_batch_norm()) continue;
    auto moments = std::make_shared<ChannelMoments>();
    conv->set_output_moments(moments);
    bn->set_input_moments(moments);
    ++fused;
  }
  if (fused > 0) spdlog::info("graph: {} conv -> batch_norm pairs take their statistics from the conv", fused);
  return fused;
}

}  // namespace convnet
