// convnet train [CONFIG] [--resume CKPT]: build the model and data from the config and run the
// Trainer. A resume continues with the checkpoint's own config; CONFIG and --set may change only
// the keys of core/train/resume_config.h.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/resume_config.h"
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
                           {"layer_state", memory.layer_state},
                           {"total", memory.total()}};
  for (const Graph::LayerSummary& r : graph.summary()) {
    const Graph::ReceptiveField& f = r.field;
    j["layers"].push_back({{"name", r.name},
                           {"module", r.module},
                           {"op", r.description},
                           {"inputs", r.inputs},
                           {"backend", r.backend},
                           {"output_shape", r.output_shape},
                           {"output_dtype", r.bf16_output ? "bf16" : "f32"},
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

// `text` as one shell word.
std::string shell_quoted(const std::string& text) {
  const bool plain = !text.empty() && text.find_first_not_of(
                                          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789_/.,:=+-@%") == std::string::npos;
  if (plain) return text;
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void warn_if_outside_output_dir(const std::string& checkpoint, const Config& config) {
  std::error_code ec;
  if (!std::filesystem::equivalent(std::filesystem::path(checkpoint).parent_path(), config.output.dir, ec))
    spdlog::warn("--resume {}: the checkpoint is not in the run's output.dir; the run continues in '{}'", checkpoint,
                 config.output.dir);
}

// The config a resume continues with: the checkpoint's own, with CONFIG (when given) and --set
// on top, as long as they change only what a resume may change.
Config resume_config(const TrainOptions& options) {
  const std::string saved = read_checkpoint_summary(options.resume).state.config_yaml;
  if (saved.empty()) {
    if (options.config.empty())
      throw ConfigError(
          fmt::format("--resume {}: the checkpoint holds no config; give the CONFIG file", options.resume));
    return load_config(options.config, options.overrides);
  }
  const std::string source = options.resume + " (its config)";
  const Config checkpoint_config = parse_config(saved, source);
  const Config config = options.config.empty() ? parse_config(saved, source, options.overrides)
                                               : load_config(options.config, options.overrides);
  check_resume_config(options.resume, checkpoint_config, config);
  warn_if_outside_output_dir(options.resume, config);
  return config;
}

Config train_config(const TrainOptions& options) {
  if (options.resume.empty()) {
    if (options.config.empty())
      throw ConfigError("train: give a CONFIG file, or --resume CHECKPOINT to continue a run");
    return load_config(options.config, options.overrides);
  }
  if (options.overwrite)
    throw ConfigError("train: --overwrite starts a new run over an old one; it cannot be combined with --resume");
  return resume_config(options);
}

}  // namespace

int train_command(const TrainOptions& options) {
  const Config config = train_config(options);
  const std::string yaml = to_yaml(config);
  if (options.dry_run) {
    Backends backends(config.train);
    Graph graph;
    build_graph(config, example_shape(config.data), backends, graph);
    return print_dry_run(config, graph, backends.main().precision(), options.json);
  }
  TrainStart start;
  start.resume = options.resume;
  start.init_from = options.init_from;
  start.overwrite = options.overwrite;
  const TrainResult r = run_training(config, yaml, start);
  if (r.interrupted) {
    const std::string last = (std::filesystem::path(config.output.dir) / "last.safetensors").string();
    spdlog::warn("interrupted after step {}; continue with: {} train --resume {}", r.steps,
                 shell_quoted(program_path()), shell_quoted(last));
    return 128 + r.signal;
  }
  const auto percent = [](double a) { return a < 0 ? std::string("not evaluated") : fmt::format("{:.2f}%", 100 * a); };
  spdlog::info("done: {} steps in {:.1f} s; final test accuracy {}, best {}; outputs in {}", r.steps, r.seconds,
               percent(r.final_test_accuracy), percent(r.best_test_accuracy), config.output.dir);
  return 0;
}

}  // namespace convnet::cli
