// convnet info CKPT: what a checkpoint holds (state, tensors, the config it was trained with). A
// safetensors file of another writer (no convnet metadata) shows its tensors alone; --config also
// checks every tensor against that config's model (a convnet checkpoint is checked against the
// model of its own config without it), as evaluate and train --init-from would load it.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "tools/commands.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

// Loads the weights into the model of --config, else of the checkpoint's own config (built on the
// CPU), as evaluate would; throws Error when they do not fit it. Returns the config's name, or ""
// for a foreign file without --config (no model to check against).
std::string check_against_model(const InfoOptions& options, const CheckpointSummary& summary) {
  const std::vector<std::string> cpu = {"train.backend=cpu", "train.layer_backends={}"};
  Config config;
  if (!options.config.empty())
    config = load_config(options.config, cpu);
  else if (summary.has_training_state)
    config = parse_config(summary.state.config_yaml, options.checkpoint + " (convnet.config)", cpu);
  else
    return "";
  Backends backends(config.train);
  Graph graph;
  build_graph(config, model_input_shape(summary, config.data), backends, graph);
  load_model_weights(options.checkpoint, graph);
  return options.config.empty() ? "its config (convnet.config)" : options.config;
}

void print_state(const CheckpointSummary& s) {
  fmt::print("  position: step {}, {} epochs completed, next batch {}\n", s.state.step, s.state.epoch,
             s.state.batch_in_epoch);
  fmt::print(
      "  last lr {:g}, best test accuracy {}\n", s.state.lr,
      s.state.best_accuracy < 0 ? std::string("(not evaluated)") : fmt::format("{:.2f}%", 100 * s.state.best_accuracy));
  fmt::print("  data: {}\n", s.state.data_fingerprint);
  if (!s.state.class_names.empty()) fmt::print("  classes: {}\n", nlohmann::json(s.state.class_names).dump());
  if (!s.input_shape.empty()) fmt::print("  input: {}\n", shape_str(s.input_shape));
}

void print_config(const std::string& yaml) {
  fmt::print("  config:\n");
  for (size_t b = 0; b < yaml.size();) {
    size_t e = yaml.find('\n', b);
    if (e == std::string::npos) e = yaml.size();
    fmt::print("    {}\n", yaml.substr(b, e - b));
    b = e + 1;
  }
}

}  // namespace

int info_command(const InfoOptions& options) {
  const CheckpointSummary s = read_checkpoint_summary(options.checkpoint, /*allow_foreign=*/true);
  const std::string model_source = check_against_model(options, s);
  int64_t params = 0, optimizer_values = 0;
  for (const auto& t : s.tensors) {
    const int64_t n = shape_numel(t.shape);
    if (t.name.rfind("optimizer.", 0) == 0)
      optimizer_values += n;
    else if (t.dtype == "F32")
      params += n;
  }
  if (options.json) {
    nlohmann::json j;
    j["path"] = options.checkpoint;
    j["convnet_checkpoint"] = s.has_training_state;
    if (s.has_training_state) {
      j["step"] = s.state.step;
      j["epoch"] = s.state.epoch;
      j["batch_in_epoch"] = s.state.batch_in_epoch;
      j["best_accuracy"] = s.state.best_accuracy;
      j["lr"] = s.state.lr;
      j["data"] = s.state.data_fingerprint;
      j["class_names"] = s.state.class_names;
      j["input_shape"] = s.input_shape;
      j["config"] = s.state.config_yaml;
    }
    if (!model_source.empty()) j["fits_model_of"] = model_source;
    j["model_values"] = params;
    j["optimizer_values"] = optimizer_values;
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : s.tensors) j["tensors"].push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("checkpoint {}\n", options.checkpoint);
  if (s.has_training_state)
    print_state(s);
  else
    fmt::print(
        "  no convnet metadata: weights written by another program (evaluate and train --init-from load "
        "them with --config CONFIG)\n");
  if (!model_source.empty()) fmt::print("  every tensor fits the model of {}\n", model_source);
  fmt::print("  {} tensors: {} model values (float32 parameters and statistics), {} optimizer values\n",
             s.tensors.size(), params, optimizer_values);
  for (const auto& t : s.tensors) fmt::print("    {:<48} {:<4} {}\n", t.name, t.dtype, shape_str(t.shape));
  if (s.has_training_state) print_config(s.state.config_yaml);
  return 0;
}

}  // namespace convnet::cli
