// convnet train CONFIG: build the model and data from the config and run the Trainer.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/train/trainer.h"
#include "tools/commands.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

// `precision`: the main backend's conv and linear arithmetic (train.precision, or tf32 for the
// *_tf32 backends).
int print_dry_run(const Config& config, Graph& graph, Precision precision, bool json) {
  if (!json) {
    fmt::print("{}\n", graph.summary_table(config.train.batch_size));
    if (precision != Precision::fp32)
      fmt::print("convolutions and linear layers compute in {}\n", precision_name(precision));
    return 0;
  }
  nlohmann::json j;
  j["params"] = graph.num_parameters();
  j["flops_per_example"] = graph.forward_flops();
  j["input_shape"] = graph.example_shape();
  j["model"] = config.model.name;
  j["precision"] = precision_name(precision);
  j["layers"] = nlohmann::json::array();
  const Graph::ActivationMemory memory = graph.activation_memory(config.train.batch_size);
  j["activation_bytes"] = {{"batch", config.train.batch_size},
                           {"outputs", memory.outputs},
                           {"gradients", memory.gradients},
                           {"total", memory.total()}};
  for (const Graph::LayerSummary& r : graph.summary()) {
    const Graph::ReceptiveField& f = r.field;
    j["layers"].push_back({{"name", r.name},
                           {"module", r.module},
                           {"op", r.description},
                           {"inputs", r.inputs},
                           {"backend", r.backend},
                           {"output_shape", r.output_shape},
                           {"params", r.parameters},
                           {"flops", r.flops},
                           {"receptive_field",
                            {{"size", {f.size_h, f.size_w}},
                             {"jump", {f.jump_h, f.jump_w}},
                             {"whole_input", f.whole},
                             {"first_whole", r.first_whole}}}});
  }
  fmt::print("{}\n", j.dump(2));
  return 0;
}

}  // namespace

int train_command(const TrainOptions& options) {
  const Config config = load_config(options.config, options.overrides);
  const std::string yaml = to_yaml(config);
  if (options.dry_run) {
    Backends backends(config.train);
    Graph graph;
    build_graph(config, example_shape(config.data), backends, graph);
    return print_dry_run(config, graph, backends.main().precision(), options.json);
  }
  const TrainResult r = run_training(config, yaml, options.resume, options.init_from);
  if (r.interrupted) {
    spdlog::warn("interrupted after step {}; continue with: convnet train {} --resume {}/last.safetensors", r.steps,
                 options.config, config.output.dir);
    return 128 + r.signal;
  }
  const auto percent = [](double a) { return a < 0 ? std::string("not evaluated") : fmt::format("{:.2f}%", 100 * a); };
  spdlog::info("done: {} steps in {:.1f} s; final test accuracy {}, best {}; outputs in {}", r.steps, r.seconds,
               percent(r.final_test_accuracy), percent(r.best_test_accuracy), config.output.dir);
  return 0;
}

}  // namespace convnet::cli
