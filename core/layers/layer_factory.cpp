#include "core/layers/layer_factory.h"

#include "core/layers/activation.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/dropout.h"
#include "core/layers/flatten.h"
#include "core/layers/identity.h"
#include "core/layers/linear.h"
#include "core/layers/merge.h"
#include "core/layers/pool2d.h"
#include "core/layers/scale.h"

namespace convnet {

const std::vector<std::string>& layer_types() {
  static const std::vector<std::string> types = {"conv",    "max_pool", "avg_pool",   "global_avg_pool",
                                                 "relu",    "gelu",     "batch_norm", "dropout",
                                                 "flatten", "linear",   "scale",      "add",
                                                 "concat",  "identity"};
  return types;
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& default_name) {
  std::string name = spec.name.empty() ? default_name : spec.name;
  const std::string& t = spec.type;
  if (t == "conv") {
    Conv2dOptions options;
    options.init = spec.init;
    options.whitening_eps = spec.whitening_eps;
    options.groups = spec.groups;
    options.freeze_weight = spec.freeze_weight;
    options.bias_train_epochs = spec.bias_train_epochs;
    return std::make_unique<Conv2d>(std::move(name), spec.out_channels, spec.kernel, spec.stride, spec.padding,
                                    spec.dilation, spec.bias, options);
  }
  if (t == "max_pool") return std::make_unique<MaxPool2d>(std::move(name), spec.kernel, spec.stride, spec.padding);
  if (t == "avg_pool") return std::make_unique<AvgPool2d>(std::move(name), spec.kernel, spec.stride, spec.padding);
  if (t == "global_avg_pool") return std::make_unique<GlobalAvgPool>(std::move(name));
  if (t == "relu") return std::make_unique<ReLU>(std::move(name));
  if (t == "gelu") return std::make_unique<GELU>(std::move(name));
  if (t == "batch_norm")
    return std::make_unique<BatchNorm2d>(std::move(name), spec.eps, spec.momentum, spec.freeze_scale,
                                         spec.bias_lr_mult);
  if (t == "dropout") return std::make_unique<Dropout>(std::move(name), spec.p);
  if (t == "flatten") return std::make_unique<Flatten>(std::move(name));
  if (t == "linear")
    return std::make_unique<Linear>(std::move(name), spec.out_features, spec.bias,
                                    LinearOptions{spec.freeze_weight, spec.bias_train_epochs});
  if (t == "scale") return std::make_unique<Scale>(std::move(name), spec.factor);
  if (t == "add") return std::make_unique<Add>(std::move(name));
  if (t == "concat") return std::make_unique<Concat>(std::move(name));
  if (t == "identity") return std::make_unique<Identity>(std::move(name));
  const std::string where = spec.line > 0 ? fmt::format(" (line {})", spec.line) : std::string();
  throw ConfigError(fmt::format("{}: unknown layer type \"{}\"{}; expected one of: {}", name, t, where,
                                fmt::join(layer_types(), ", ")));
}

}  // namespace convnet
