#include "tests/fuzz/fuzz_models.h"

#include "convnet/model_graph.h"
#include "core/base/rng.h"
#include "core/train/trainer.h"
#include "models/model_builder.h"

namespace convnet::fuzz {

namespace {

std::unique_ptr<FuzzModel> build_model(Backend& backend, const std::string& name, const std::string& config_path) {
  auto model = std::make_unique<FuzzModel>();
  model->name = name;
  model->config = load_config(config_path);
  const Shape example = example_shape(model->config.data);
  add_model_layers(model->config.model, example, model->graph);
  Rng rng(model->config.train.seed);
  model->graph.build(example, backend, rng);
  model->optimizer.emplace(model->config.optimizer,
                           make_parameter_groups(model->config.optimizer, model->graph.named_parameters(),
                                                 model->graph.parameter_backends()));
  if (model->config.ema.mode != "none") model->average.emplace(model->config.ema, weight_average_targets(model->graph));
  return model;
}

}  // namespace

std::vector<std::unique_ptr<FuzzModel>> build_fuzz_models(Backend& backend, const std::string& source_dir) {
  std::vector<std::unique_ptr<FuzzModel>> models;
  models.push_back(build_model(backend, "tiny_run", source_dir + "/tests/fuzz/tiny_run.yaml"));
  models.push_back(build_model(backend, "vgg11_bn", source_dir + "/configs/vgg11_bn.yaml"));
  models.push_back(build_model(backend, "fast94", source_dir + "/configs/fast94.yaml"));
  return models;
}

}  // namespace convnet::fuzz
