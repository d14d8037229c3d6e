#include "tools/session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "core/base/error.h"
#ifdef CONVNET_WITH_CUDA
#include "cuda/device.h"
#include "cuda/nccl_collectives.h"
#endif
#include "core/dist/open_group.h"
#include "core/dist/with_device_collectives.h"
#include "core/train/checkpoint.h"
#include "core/train/run_folder.h"
#include "core/train/sync_batch_norm.h"
#include "datasets/cifar10.h"
#include "datasets/cifar_binary.h"
#include "datasets/device_loader.h"
#include "datasets/image_folder.h"
#include "datasets/loader.h"

namespace convnet::cli {

ImageDataset load_test_split(const DataConfig& data, uint64_t seed, int threads) {
  if (data.dataset != "cifar10") return load_data(data, seed, threads).test;  // generated, cheap
  const DetectedFormat found = detect_cifar10_format(data.path, data.format);
  ImageDataset test = found.format == DataFormat::binary ? load_cifar10_binary(found.dir, Split::test)
                                                         : load_image_folder_split(found.dir + "/test", {}, threads);
  return apply_limit(std::move(test), data.test_limit, "data.test_limit");
}

namespace {

// data.loader: whether batches are built on `input` (the first layer's backend) by a
// DeviceDataLoader (device; auto when `input` is not the CPU) or on host threads by a DataLoader.
bool use_device_loader(const std::string& loader, const Backend& input) {
  if (loader == "host") return false;
  if (loader == "device") return true;
  if (loader == "auto") return input.device().kind != DeviceKind::cpu;
  throw ConfigError(fmt::format("data.loader: expected auto, host or device, got '{}'", loader));
}

std::unique_ptr<BatchSource> make_loader(bool on_device, ImageDataset data, LoaderOptions options, Backend& input) {
  auto shared = std::make_shared<const ImageDataset>(std::move(data));
  if (on_device) return std::make_unique<DeviceDataLoader>(std::move(shared), std::move(options), input);
  return std::make_unique<DataLoader>(std::move(shared), std::move(options));
}

// The loaders of rank `group.rank()`: its shard of every batch.
LoaderOptions sharded(LoaderOptions options, const ReplicaGroup& group) {
  options.shard_rank = group.rank();
  options.shard_count = group.size();
  return options;
}

}  // namespace

// The GPU of a data-parallel rank: its local rank's, round robin over the machine's GPUs.
int gpu_of_rank(const LaunchInfo& launch) {
#ifdef CONVNET_WITH_CUDA
  const int count = cuda::gpu_count();
  if (launch.size <= 1 || count <= 0) return 0;
  if (launch.local_rank >= count)
    spdlog::warn("local rank {} shares a GPU: this machine has {} GPU{} for more ranks", launch.local_rank, count,
                 count == 1 ? "" : "s");
  return launch.local_rank % count;
#else
  (void)launch;
  return 0;
#endif
}

// The device transport for a data-parallel run whose parameters are on GPU `gpu_index`: NCCL when
// built in. Null with one rank, on the cpu, or without NCCL (gradients then go through host
// memory). A collective: every rank decides the same (the config and the backends are the same).
std::unique_ptr<DeviceCollectives> open_device_transport(const TrainConfig& train, Graph& graph, ReplicaGroup& group,
                                                         int gpu_index) {
  if (group.size() == 1 || graph.layer_backend(0).device().kind != DeviceKind::cuda) return nullptr;
#ifdef CONVNET_WITH_CUDA
  if (!cuda::nccl_version().empty()) {
    std::unique_ptr<DeviceCollectives> nccl = cuda::open_nccl(group, gpu_index, train.distributed_timeout);
    spdlog::info("data-parallel: gradients averaged on the GPUs with {}", nccl->name());
    return nccl;
  }
  spdlog::warn("data-parallel: this build has no NCCL; GPU gradients go through host memory over MPI (slower)");
#else
  (void)train;
  (void)gpu_index;
#endif
  return nullptr;
}

std::string program_path() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "convnet" : self.string();
}

TrainResult run_training(const Config& config, const std::string& config_yaml, const TrainStart& start,
                         ReplicaGroup& group, int gpu_index) {
  check_same_on_all_ranks(group, "config", config_yaml);
  // Before the data is loaded, so a refused folder is reported at once.
  std::optional<RunFolder> folder;
  if (group.rank() == 0)
    folder.emplace(config.output.dir,
                   !start.resume.empty() ? RunStart::resume
                   : start.overwrite     ? RunStart::overwrite
                                         : RunStart::fresh,
                   program_path());
  Backends backends(config.train, gpu_index);
  DataSplits data = load_data(config.data, config.train.seed, config.train.threads);
  spdlog::info("data: {} training and {} test images of {}x{}x{} from {}", data.train.size, data.test.size,
               data.train.height, data.train.width, data.train.channels, data.train.source);
  // The graph first: the loader follows its first layer's backend.
  Graph graph;
  build_graph(config, {data.train.height, data.train.width, data.train.channels}, backends, graph);
  spdlog::info("model {}: {} parameters, {:.3f} GFLOPs forward per image", config.model.name, graph.num_parameters(),
               static_cast<double>(graph.forward_flops()) / 1e9);
  spdlog::debug("\n{}", graph.summary_table());

  // Data-dependent initialisation (conv init: whitening) sees train.init_images training images,
  // unaugmented, taken class-balanced (class_balanced_subset): image folders, and binary files
  // converted from them, list one class after another, so "the first N" could be all airplanes.
  // A resumed run takes every weight from its checkpoint instead, --init-from from its file.
  if (!start.init_from.empty()) load_model_weights(start.init_from, graph);
  if (start.resume.empty() && start.init_from.empty() && graph.needs_data_init()) {
    const int64_t count = std::min(config.train.init_images, data.train.size);
    if (count < config.train.init_images)
      spdlog::warn("train.init_images {}: the training set has only {} images; using them all",
                   config.train.init_images, count);
    const ImageDataset sample = data.train.subset(class_balanced_subset(data.train.labels, count));
    graph.initialize_from_data(normalized_images(sample, count, config.data.mean, config.data.std));
  }

  if (config.model.sync_batch_norm && group.size() > 1)
    spdlog::info("model.sync_batch_norm: {} batchnorm layers use the statistics of all {} ranks",
                 use_sync_batch_norm(graph, group), group.size());
  Backend& input = graph.layer_backend(0);
  const bool on_device = use_device_loader(config.data.loader, input);
  const std::unique_ptr<BatchSource> train =
      make_loader(on_device, std::move(data.train),
                  sharded(LoaderOptions::train(config.data, config.train.batch_size, config.train.seed), group), input);
  const std::unique_ptr<BatchSource> test =
      make_loader(on_device, std::move(data.test),
                  sharded(LoaderOptions::test(config.data, config.train.batch_size), group), input);
  check_same_on_all_ranks(group, "training data (data.path)", train->fingerprint());
  if (on_device)
    spdlog::info("data loader: device (data.loader {}): images resident on {}, batches built by the {} backend",
                 config.data.loader, input.device().str(), input.name());
  else
    spdlog::info("data loader: host (data.loader {}): batches prepared by {} thread{}", config.data.loader,
                 config.data.workers, config.data.workers == 1 ? "" : "s");
  // Every rank must have put its layers on the same kind of backend (train.backend auto picks per
  // machine), or the ranks would disagree on the transport below.
  check_same_on_all_ranks(group, "backend of the first layer", graph.layer_backend(0).name());
  const std::unique_ptr<DeviceCollectives> transport = open_device_transport(config.train, graph, group, gpu_index);
  std::optional<WithDeviceCollectives> with_transport;
  if (transport) with_transport.emplace(group, *transport);
  Trainer trainer(config, config_yaml, graph, *train, test.get(), with_transport ? &*with_transport : &group);
  return trainer.run(start.resume);
}

TrainResult run_training(const Config& config, const std::string& config_yaml, const TrainStart& start) {
  const LaunchInfo launch = detect_launch();
  const std::unique_ptr<ReplicaGroup> group = open_replica_group(config.train, launch);
  try {
    return run_training(config, config_yaml, start, *group, gpu_of_rank(launch));
  } catch (const std::exception& e) {
    group->abort_job(e.what());  // several ranks: the others must not wait for this one
    throw;
  }
}

}  // namespace convnet::cli
