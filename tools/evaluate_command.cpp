// convnet evaluate CKPT: the whole test split through the model saved in a checkpoint (for
// ema.mode ema the averaged weights: they are the checkpoint's model tensors), with the
// test-time augmentation of --tta or else the checkpoint's train.tta. With --config, the model
// and data of that config instead of the checkpoint's own (a file of weights written by another
// program has none). The data must have the image size and the classes the model was trained on:
// the same classes in another order are mapped by name, anything else is an Error.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/evaluate.h"
#include "datasets/cifar10.h"
#include "datasets/class_alignment.h"
#include "datasets/loader.h"
#include "tools/commands.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

// --config's config, else the checkpoint's own (convnet.config), with the command's options.
Config evaluation_config(const EvaluateOptions& options, const CheckpointSummary& summary) {
  std::vector<std::string> overrides;
  if (!options.data_path.empty()) overrides.push_back("data.path=" + options.data_path);
  if (options.batch_size > 0) overrides.push_back(fmt::format("train.batch_size={}", options.batch_size));
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  Config config = options.config.empty()
                      ? parse_config(summary.state.config_yaml, options.checkpoint + " (convnet.config)", overrides)
                      : load_config(options.config, overrides);
  config.train.tta = evaluate_tta(options, config.train.tta);
  return config;
}

// The images must be the size the model was trained on (convnet does not resize).
void check_image_size(const ImageDataset& data, const Shape& model_input, const std::string& checkpoint) {
  const Shape data_shape{data.height, data.width, data.channels};
  if (model_input.empty() || data_shape == model_input) return;
  throw Error(fmt::format(
      "{} holds {}x{} images with {} channels, but the model of '{}' was trained on {}x{} images "
      "with {} channels; convert the images to that size (convnet does not resize)",
      data.source, data.width, data.height, data.channels, checkpoint, model_input[1], model_input[0], model_input[2]));
}

// Labels the data by the checkpoint's class names when it records them (format 2); else the
// data's order is all there is, and the class count must at least match the model's outputs.
void match_classes(ImageDataset& data, const CheckpointSummary& summary, const Graph& graph,
                   const std::string& checkpoint) {
  const std::vector<std::string>& trained = summary.state.class_names;
  if (!trained.empty()) {
    if (align_classes(data, trained, fmt::format("'{}'", checkpoint)))
      spdlog::info("{} lists the classes in another order than '{}': labels mapped by class name", data.source,
                   checkpoint);
    return;
  }
  const int64_t outputs = graph.output_shape().empty() ? 0 : graph.output_shape()[0];
  if (data.num_classes() != outputs)
    throw Error(fmt::format("{} has {} classes ({}) but the model of '{}' outputs {}", data.source, data.num_classes(),
                            fmt::join(data.class_names, ", "), checkpoint, outputs));
  spdlog::warn(
      "'{}' does not record the names of its classes (written by another program or by convnet before "
      "checkpoint format 2): assuming they are the data's, in its order ({})",
      checkpoint, fmt::join(data.class_names, ", "));
}

}  // namespace

int evaluate_command(const EvaluateOptions& options) {
  const CheckpointSummary summary = read_checkpoint_summary(options.checkpoint, !options.config.empty());
  const Config config = evaluation_config(options, summary);

  Backends backends(config.train);
  ImageDataset test_set = load_test_split(config.data, config.train.seed, config.train.threads);
  check_image_size(test_set, summary.input_shape, options.checkpoint);
  Graph graph;
  build_graph(config, {test_set.height, test_set.width, test_set.channels}, backends, graph);
  match_classes(test_set, summary, graph, options.checkpoint);
  load_model_weights(options.checkpoint, graph);
  DataLoader test(std::make_shared<const ImageDataset>(std::move(test_set)),
                  LoaderOptions::test(config.data, config.train.batch_size));
  const Tta tta = parse_tta(config.train.tta, options.tta.empty() ? "train.tta" : "--tta");
  const EvalResult r = evaluate(graph, test, tta);
  const std::vector<std::string> names = test.class_names();

  if (options.json) {
    nlohmann::json j;
    j["checkpoint"] = options.checkpoint;
    j["tta"] = tta_name(tta);
    j["accuracy"] = r.accuracy;
    j["loss"] = r.loss;
    j["num_examples"] = r.num_examples;
    j["class_names"] = names;
    j["per_class_accuracy"] = r.per_class_accuracy;
    j["confusion_matrix"] = r.confusion;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("{}: {} test images, TTA {}, loss {:.4f}, top-1 accuracy {:.2f}%\n", options.checkpoint, r.num_examples,
             tta_name(tta), r.loss, 100 * r.accuracy);
  fmt::print("\nper-class accuracy:\n");
  for (size_t c = 0; c < names.size(); ++c) fmt::print("  {:<12} {:6.2f}%\n", names[c], 100 * r.per_class_accuracy[c]);
  fmt::print("\nconfusion matrix (rows: true class, columns: predicted):\n{:>12}", "");
  for (size_t c = 0; c < names.size(); ++c) fmt::print(" {:>6.6}", names[c]);
  fmt::print("\n");
  for (size_t t = 0; t < names.size(); ++t) {
    fmt::print("{:>12}", names[t]);
    for (int64_t v : r.confusion[t]) fmt::print(" {:>6}", v);
    fmt::print("\n");
  }
  return 0;
}

}  // namespace convnet::cli
