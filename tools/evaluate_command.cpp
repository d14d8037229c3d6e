// convnet evaluate CKPT: the whole test split through the model saved in a checkpoint (for
// ema.mode ema the averaged weights: they are the checkpoint's model tensors), with the
// test-time augmentation of --tta or else the checkpoint's train.tta.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/evaluate.h"
#include "datasets/cifar10.h"
#include "datasets/loader.h"
#include "tools/commands.h"
#include "tools/session.h"

namespace convnet::cli {

int evaluate_command(const EvaluateOptions& options) {
  const CheckpointSummary summary = read_checkpoint_summary(options.checkpoint);
  std::vector<std::string> overrides;
  if (!options.data_path.empty()) overrides.push_back("data.path=" + options.data_path);
  if (options.batch_size > 0) overrides.push_back(fmt::format("train.batch_size={}", options.batch_size));
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  Config config = parse_config(summary.state.config_yaml, options.checkpoint + " (convnet.config)", overrides);
  config.train.tta = evaluate_tta(options, config.train.tta);

  Backends backends(config.train);
  ImageDataset test_set = load_test_split(config.data, config.train.seed, config.train.threads);
  DataLoader test(std::make_shared<const ImageDataset>(std::move(test_set)),
                  LoaderOptions::test(config.data, config.train.batch_size));
  Graph graph;
  build_graph(config, test.example_shape(), backends, graph);
  load_checkpoint(options.checkpoint, graph, nullptr);
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
