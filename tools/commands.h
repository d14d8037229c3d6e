// The `convnet` subcommands. Each returns the process exit code: 0 ok, 1 runtime failure,
// 2 usage or config error (main() maps ConfigError to 2 and Error to 1).
#pragma once

#include <string>
#include <vector>

namespace convnet {
struct Config;  // core/config/config.h
}

namespace convnet::cli {

struct TrainOptions {
  std::string config;                  // may be empty with `resume`: the checkpoint's config is used
  std::vector<std::string> overrides;  // --set a.b=value
  std::string resume;
  std::string init_from;   // weights to start from (a checkpoint, or PyTorch's with the model's names)
  bool overwrite = false;  // a fresh run may replace the run already in output.dir
  bool dry_run = false;
  bool json = false;
};
int train_command(const TrainOptions& options);

struct EvaluateOptions {
  std::string checkpoint;
  std::string config;      // the model and data to use instead of the checkpoint's (needed for foreign files)
  std::string data_path;   // overrides the checkpoint's data.path
  int batch_size = 0;      // 0: the checkpoint's train.batch_size
  std::string backend;     // overrides train.backend
  std::string tta;         // none | flip | flip_translate; empty: see tta_given
  bool tta_given = false;  // --tta without a value: the checkpoint's train.tta, or flip_translate when that is none
  bool json = false;
};
int evaluate_command(const EvaluateOptions& options);
// The test-time augmentation `convnet evaluate` applies to a checkpoint trained with `checkpoint_tta`.
std::string evaluate_tta(const EvaluateOptions& options, const std::string& checkpoint_tta);

struct BenchmarkOptions {
  // Empty: VGG-16 BN at batch 128 when the backend is a GPU one, VGG-11 BN at batch 64 on cpu.
  std::string config;
  std::vector<std::string> overrides;
  std::string backend;
  int batch_size = 0;
  int repeats = 10;
  bool json = false;
  // Backends to time the same layer passes and training step on, for the ratio
  // time_theirs / time_ours, each NAME or NAME@PRECISION (that backend in train.precision
  // PRECISION, e.g. cudnn@bf16). Used only when compare_given; "none" (or an empty list) turns the
  // comparison off. Not given, for the cuda backends: cuDNN in the main backend's precision
  // ("cudnn,cudnn_tf32" in fp32, "cudnn_tf32" in tf32, "cudnn@bf16" in bf16); none otherwise.
  std::vector<std::string> compare;
  bool compare_given = false;
  // train.precision of the main backend (fp32, tf32, bf16); empty: the config's.
  std::string precision;
  // --ranks: the data-parallel sizes to model instead of the per-layer report (scaling_benchmark).
  std::vector<int> ranks;
  double nvlink_gbps = 450, network_gbps = 45;  // all-reduce bus bandwidths, inside / across nodes
  int gpus_per_node = 8;
};
int benchmark_command(const BenchmarkOptions& options);
// The options' config with --set, --backend, --batch-size and --precision applied, "auto" resolved.
Config benchmark_config(const BenchmarkOptions& options);
// convnet benchmark --ranks: data-parallel scaling (tools/scaling_benchmark.cpp).
int scaling_benchmark(const BenchmarkOptions& options);

struct PredictOptions {
  std::string checkpoint;
  std::vector<std::string> inputs;  // image files, folders, "-" (paths on stdin)
  int top = 5;
  int batch_size = 64;
  bool json = false;    // one JSON object per line
  std::string backend;  // overrides train.backend
  std::string tta;      // none | flip | flip_translate; empty: none
};
int predict_command(const PredictOptions& options);

struct ExportOptions {
  std::string checkpoint;
  std::string format = "onnx";
  std::string output;  // empty: the checkpoint's path with .onnx for .safetensors
  bool fold_batch_norm = false;
};
int export_command(const ExportOptions& options);

struct InfoOptions {
  std::string checkpoint;
  std::string config;  // also check the tensors against this config's model
  bool json = false;
};
int info_command(const InfoOptions& options);

int convert_data_command(const std::string& source, const std::string& destination);

std::string version_text();
std::string convnet_version();  // "0.1.0"

}  // namespace convnet::cli
