// convnet export CKPT --format onnx: the checkpoint's model as an ONNX file (tools/onnx/onnx_export.h),
// checked by ONNX's own checker before it is written (atomically).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "tools/commands.h"
#include "tools/onnx/onnx_export.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

std::string default_output(const std::string& checkpoint) {
  const std::string suffix = ".safetensors";
  if (checkpoint.ends_with(suffix)) return checkpoint.substr(0, checkpoint.size() - suffix.size()) + ".onnx";
  return checkpoint + ".onnx";
}

}  // namespace

int export_command(const ExportOptions& options) {
  if (options.format != "onnx") throw ConfigError(fmt::format("--format: {} is not one of {{onnx}}", options.format));
  if (!onnx_export_available())
    throw Error("this convnet was built without ONNX: install libonnx-dev and libprotobuf-dev and rebuild");
  const CheckpointSummary summary = read_checkpoint_summary(options.checkpoint);
  Config config = parse_config(summary.state.config_yaml, options.checkpoint + " (convnet.config)");
  config.train.backend = "cpu";
  config.train.layer_backends.clear();
  // The model on the cpu, to know its structure and to check the checkpoint against it.
  Backends backends(config.train);
  Graph graph;
  build_graph(config, model_input_shape(summary, config.data), backends, graph);
  load_checkpoint(options.checkpoint, graph, nullptr);

  std::map<std::string, Tensor> tensors;
  for (NamedTensor& t : read_safetensors(options.checkpoint).tensors) tensors.emplace(t.name, std::move(t.tensor));
  OnnxExportOptions export_options;
  export_options.fold_batch_norm = options.fold_batch_norm;
  export_options.producer_version = convnet_version();
  export_options.metadata = {{"convnet.checkpoint", options.checkpoint},
                             {"convnet.input", "NCHW float, (pixel / 255 - mean) / std per channel"},
                             {"convnet.mean", fmt::format("{}", fmt::join(config.data.mean, ","))},
                             {"convnet.std", fmt::format("{}", fmt::join(config.data.std, ","))}};
  const std::string model = export_onnx(graph, tensors, export_options);
  check_onnx_model(model);
  const std::string output = options.output.empty() ? default_output(options.checkpoint) : options.output;
  write_file_atomic(output, model);
  fmt::print("{}: {} ({} bytes, opset 17, input [N, {}, {}, {}]{}); normalise inputs with mean [{}], std [{}]\n",
             output, config.model.name, model.size(), graph.example_shape()[2], graph.example_shape()[0],
             graph.example_shape()[1], options.fold_batch_norm ? ", batchnorm folded into the convolutions" : "",
             fmt::join(config.data.mean, ", "), fmt::join(config.data.std, ", "));
  return 0;
}

}  // namespace convnet::cli
