// convnet: train, evaluate and benchmark convolutional nets.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/base/error.h"
#include "core/base/log.h"
#include "core/config/schema.h"
#include "tools/commands.h"

namespace {

// Arguments that two subcommands share, spelled and checked the same way in both.
void add_checkpoint_argument(CLI::App* cmd, std::string& path) {
  cmd->add_option("checkpoint", path, "Checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
}
// The values the config schema allows for `key` (a string key with a fixed set of values), so a
// flag that sets that key is checked against them and a mistake names the flag the user typed.
std::vector<std::string> schema_choices(std::string_view key) {
  const convnet::config_schema::Field* field = convnet::config_schema::find_field(key);
  return field == nullptr ? std::vector<std::string>{}
                          : std::vector<std::string>(field->choices.begin(), field->choices.end());
}
// `source` names where the default comes from: "checkpoint" or "config".
void add_config_option(CLI::App* cmd, std::string& config, const std::string& what) {
  cmd->add_option("--config", config, "YAML config of the model " + what)->check(CLI::ExistingFile);
}
void add_backend_option(CLI::App* cmd, std::string& backend, const std::string& source) {
  cmd->add_option("--backend", backend, "cpu, cuda, cuda_tf32, cudnn or cudnn_tf32 (default: the " + source + "'s)")
      ->check(CLI::IsMember(schema_choices("train.backend")));
}
void add_batch_size_option(CLI::App* cmd, int& batch_size, const std::string& source) {
  cmd->add_option("--batch-size", batch_size, "Batch size (default: the " + source + "'s)")
      ->check(CLI::Range(1, convnet::config_schema::kMaxBatchSize));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace convnet::cli;
  CLI::App app{"convnet: train, evaluate and benchmark convolutional networks (CPU, CUDA and cuDNN backends)"};
  app.footer(R"(Examples:
  convnet train configs/default.yaml
  convnet train configs/vgg11_bn.yaml --set train.epochs=30 --set optimizer.lr=0.05
  convnet train configs/vgg16_bn.yaml --dry-run --json
  convnet train --resume runs/default/last.safetensors --set train.epochs=12
  convnet evaluate runs/default/best.safetensors --json
  convnet evaluate runs/default/best.safetensors --tta flip_translate
  convnet benchmark configs/vgg11_bn.yaml --set train.batch_size=64
  convnet benchmark --backend cuda --compare cudnn,cudnn_tf32 --json
  convnet benchmark --backend cuda --precision bf16 --compare cudnn@bf16
  convnet info runs/default/last.safetensors
Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.)");
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.set_version_flag("--version", version_text());

  TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand("train", "Train a model from a YAML config");
  train_cmd->add_option("config", train.config, "YAML config file (with --resume: default the checkpoint's config)")
      ->check(CLI::ExistingFile);
  train_cmd->add_option("--set", train.overrides, "Override a config key: --set optimizer.lr=0.05 (repeatable)");
  train_cmd->add_option("--resume", train.resume, "Continue from a checkpoint (e.g. OUTPUT_DIR/last.safetensors)")
      ->check(CLI::ExistingFile);
  train_cmd
      ->add_option("--init-from", train.init_from,
                   "Start from these weights (a checkpoint, or a safetensors file with the model's tensor names)")
      ->check(CLI::ExistingFile)
      ->excludes("--resume");
  train_cmd->add_flag("--overwrite", train.overwrite, "Delete the run already in output.dir and start a new one");
  CLI::Option* dry_run_flag = train_cmd->add_flag("--dry-run", train.dry_run, "Print the model summary and exit");
  train_cmd->add_flag("--json", train.json, "With --dry-run: print one JSON object")->needs(dry_run_flag);

  EvaluateOptions eval;
  CLI::App* eval_cmd = app.add_subcommand("evaluate", "Evaluate a checkpoint on the whole test set");
  add_checkpoint_argument(eval_cmd, eval.checkpoint);
  add_config_option(eval_cmd, eval.config,
                    "and data (default: the checkpoint's; needed for weights without convnet metadata)");
  eval_cmd->add_option("--data", eval.data_path, "Data folder (default: the checkpoint's data.path)");
  add_batch_size_option(eval_cmd, eval.batch_size, "checkpoint");
  add_backend_option(eval_cmd, eval.backend, "checkpoint");
  CLI::Option* tta_opt =
      eval_cmd
          ->add_option("--tta", eval.tta,
                       "Test-time augmentation: none, flip or flip_translate (not given: the checkpoint's train.tta; "
                       "--tta alone: the checkpoint's train.tta, or flip_translate when that is none)")
          ->expected(0, 1)
          ->check(CLI::IsMember(schema_choices("train.tta")));
  eval_cmd->add_flag("--json", eval.json, "Print one JSON object");

  BenchmarkOptions bench;
  CLI::App* bench_cmd =
      app.add_subcommand("benchmark", "Time every layer's forward and backward passes, against other backends too");
  bench_cmd
      ->add_option("config", bench.config,
                   "Model config (default: VGG-16 with BN at batch 128 on a GPU backend, VGG-11 with BN at batch 64 "
                   "on cpu)")
      ->check(CLI::ExistingFile);
  bench_cmd->add_option("--set", bench.overrides, "Override a config key (repeatable)");
  add_backend_option(bench_cmd, bench.backend, "config");
  add_batch_size_option(bench_cmd, bench.batch_size, "config");
  bench_cmd->add_option("--repeats", bench.repeats, "Timed repetitions per pass")->check(CLI::Range(3, 10000));
  CLI::Option* compare_opt =
      bench_cmd
          ->add_option("--compare", bench.compare,
                       "Comma-separated backends to time the same passes and training step on, printing "
                       "time_theirs / time_ours (> 1: ours is faster), each NAME or NAME@PRECISION (e.g. "
                       "cudnn@bf16); 'none' for no comparison (default for cuda: cuDNN in the same precision, "
                       "cudnn,cudnn_tf32 in fp32, cudnn_tf32 in tf32, cudnn@bf16 in bf16; else none)")
          ->delimiter(',');
  bench_cmd
      ->add_option("--precision", bench.precision,
                   "train.precision of the main backend's convolutions and linear layers (as --set "
                   "train.precision=P)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  bench_cmd->add_flag("--json", bench.json, "Print one JSON object");
  bench_cmd
      ->add_option("--ranks", bench.ranks,
                   "Data-parallel sizes to model instead of the per-layer report (e.g. 1,2,4,8,16,64): gradient "
                   "buckets, backward timeline, all-reduce measured under mpirun, modelled step time")
      ->delimiter(',');
  bench_cmd->add_option("--nvlink-gbps", bench.nvlink_gbps, "With --ranks: all-reduce bus bandwidth inside a node")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench_cmd->add_option("--network-gbps", bench.network_gbps, "With --ranks: all-reduce bus bandwidth across nodes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench_cmd->add_option("--gpus-per-node", bench.gpus_per_node, "With --ranks: GPUs sharing the in-node link")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();

  PredictOptions pred;
  CLI::App* predict_cmd = app.add_subcommand("predict", "Classify image files with a checkpoint's model");
  add_checkpoint_argument(predict_cmd, pred.checkpoint);
  predict_cmd->add_option("images", pred.inputs, "JPEG/PNG files, folders, or - for paths on stdin")->required();
  predict_cmd->add_option("--top", pred.top, "Classes to print per image")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  predict_cmd->add_option("--batch-size", pred.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  predict_cmd->add_option("--backend", pred.backend,
                          "cpu, cuda, cuda_tf32, cudnn or cudnn_tf32 (default: the checkpoint's)");
  predict_cmd->add_option("--tta", pred.tta, "Test-time augmentation")
      ->check(CLI::IsMember({"none", "flip", "flip_translate"}));
  predict_cmd->add_flag("--json", pred.json, "One JSON object per image and line");

  ExportOptions exp;
  CLI::App* export_cmd = app.add_subcommand("export", "Write a checkpoint's model for another runtime (ONNX)");
  add_checkpoint_argument(export_cmd, exp.checkpoint);
  export_cmd->add_option("--format", exp.format, "Output format")
      ->check(CLI::IsMember({"onnx"}))
      ->capture_default_str();
  export_cmd->add_option("-o,--output", exp.output, "Output file (default: CHECKPOINT with .onnx)");
  export_cmd->add_flag("--fold-batch-norm", exp.fold_batch_norm,
                       "Fold each batchnorm into the convolution that alone feeds it");

  InfoOptions info;
  CLI::App* info_cmd = app.add_subcommand("info", "Describe a checkpoint");
  add_checkpoint_argument(info_cmd, info.checkpoint);
  add_config_option(info_cmd, info.config, "to check the checkpoint's tensors against");
  info_cmd->add_flag("--json", info.json, "Print one JSON object");

  std::string convert_src, convert_dst;
  CLI::App* convert_cmd =
      app.add_subcommand("convert-data", "Convert a class-per-folder image tree to CIFAR-10 binary files");
  convert_cmd->add_option("source", convert_src, "Folder with train/<class>/ and test/<class>/")->required();
  convert_cmd->add_option("destination", convert_dst, "Output folder for data_batch_N.bin, test_batch.bin")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  bench.compare_given = compare_opt->count() > 0;
  eval.tta_given = tta_opt->count() > 0;
  convnet::configure_logging(log_level);
  try {
    if (*train_cmd) return train_command(train);
    if (*eval_cmd) return evaluate_command(eval);
    if (*bench_cmd) return benchmark_command(bench);
    if (*export_cmd) return export_command(exp);
    if (*predict_cmd) return predict_command(pred);
    if (*info_cmd) return info_command(info);
    if (*convert_cmd) return convert_data_command(convert_src, convert_dst);
  } catch (const convnet::ConfigError& e) {
    std::fflush(stdout);
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    spdlog::error("{}", e.what());
    return 1;
  }
  return 2;
}
