// convnet info CKPT: what a checkpoint holds (state, tensors, the config it was trained with).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/train/checkpoint.h"
#include "tools/commands.h"

namespace convnet::cli {

int info_command(const InfoOptions& options) {
  const CheckpointSummary s = read_checkpoint_summary(options.checkpoint);
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
    j["step"] = s.state.step;
    j["epoch"] = s.state.epoch;
    j["batch_in_epoch"] = s.state.batch_in_epoch;
    j["best_accuracy"] = s.state.best_accuracy;
    j["lr"] = s.state.lr;
    j["model_values"] = params;
    j["optimizer_values"] = optimizer_values;
    j["data"] = s.state.data_fingerprint;
    j["config"] = s.state.config_yaml;
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : s.tensors) j["tensors"].push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("checkpoint {}\n", options.checkpoint);
  fmt::print("  position: step {}, {} epochs completed, next batch {}\n", s.state.step, s.state.epoch,
             s.state.batch_in_epoch);
  fmt::print(
      "  last lr {:g}, best test accuracy {}\n", s.state.lr,
      s.state.best_accuracy < 0 ? std::string("(not evaluated)") : fmt::format("{:.2f}%", 100 * s.state.best_accuracy));
  fmt::print("  data: {}\n", s.state.data_fingerprint);
  fmt::print("  {} tensors: {} model values (float32 parameters and statistics), {} optimizer values\n",
             s.tensors.size(), params, optimizer_values);
  for (const auto& t : s.tensors) fmt::print("    {:<48} {:<4} {}\n", t.name, t.dtype, shape_str(t.shape));
  fmt::print("  config:\n");
  for (size_t b = 0; b < s.state.config_yaml.size();) {
    size_t e = s.state.config_yaml.find('\n', b);
    if (e == std::string::npos) e = s.state.config_yaml.size();
    fmt::print("    {}\n", s.state.config_yaml.substr(b, e - b));
    b = e + 1;
  }
  return 0;
}

}  // namespace convnet::cli
