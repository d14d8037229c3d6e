#include "tools/session.h"

#include <spdlog/spdlog.h>

#include "core/base/backend_registry.h"
#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#ifdef CONVNET_WITH_CUDA
#include "cuda/device.h"
#include "cuda/gpu_backend.h"
#endif
#include "datasets/cifar10.h"
#include "datasets/cifar_binary.h"
#include "datasets/image_folder.h"
#include "datasets/loader.h"
#include "models/model_builder.h"

namespace convnet::cli {

void register_all_backends() {
  register_cpu_backend();
#ifdef CONVNET_WITH_CUDA
  cuda::register_backends();
#endif
}

std::string resolve_backend_name(const std::string& name) {
  if (name != "auto") return name;
#ifdef CONVNET_WITH_CUDA
  if (cuda::gpu_count() > 0) return "cuda";
  spdlog::warn("train.backend auto: {}; using cpu", cuda::gpu_unavailable_reason());
#else
  spdlog::warn("train.backend auto: this build has no GPU backends; using cpu");
#endif
  return "cpu";
}

Backends::Backends(const TrainConfig& train) {
  register_all_backends();
  set_cpu_threads(train.threads);
  const std::string main_name = resolve_backend_name(train.backend);
  main_ = create_backend(main_name);
  for (const auto& [layer, backend_name] : train.layer_backends) {
    const std::string name = resolve_backend_name(backend_name);
    if (name == main_name) {
      overrides_[layer] = main_.get();
      continue;
    }
    auto& slot = others_[name];
    if (!slot) slot = create_backend(name);
    overrides_[layer] = slot.get();
  }
}

Shape example_shape(const DataConfig& data) {
  if (data.dataset == "synthetic") return {data.synthetic_image_size, data.synthetic_image_size, 3};
  return {32, 32, 3};
}

void build_graph(const Config& config, const Shape& example, Backends& backends, Graph& graph) {
  add_model_layers(config.model, example, graph);
  Rng rng(config.train.seed);
  graph.build(example, backends.main(), rng, backends.layer_overrides());
}

ImageDataset load_test_split(const DataConfig& data, uint64_t seed, int threads) {
  if (data.dataset != "cifar10") return load_data(data, seed, threads).test;  // generated, cheap
  const DetectedFormat found = detect_cifar10_format(data.path, data.format);
  ImageDataset test = found.format == DataFormat::binary ? load_cifar10_binary(found.dir, Split::test)
                                                         : load_image_folder_split(found.dir + "/test", {}, threads);
  return apply_limit(std::move(test), data.test_limit, "data.test_limit");
}

TrainResult run_training(const Config& config, const std::string& config_yaml, const std::string& resume) {
  Backends backends(config.train);
  DataSplits data = load_data(config.data, config.train.seed, config.train.threads);
  spdlog::info("data: {} training and {} test images of {}x{}x{} from {}", data.train.size, data.test.size,
               data.train.height, data.train.width, data.train.channels, data.train.source);
  DataLoader train(std::make_shared<const ImageDataset>(std::move(data.train)),
                   LoaderOptions::train(config.data, config.train.batch_size, config.train.seed));
  DataLoader test(std::make_shared<const ImageDataset>(std::move(data.test)),
                  LoaderOptions::test(config.data, config.train.batch_size));
  Graph graph;
  build_graph(config, train.example_shape(), backends, graph);
  spdlog::info("model {}: {} parameters, {:.3f} GFLOPs forward per image", config.model.name, graph.num_parameters(),
               static_cast<double>(graph.forward_flops()) / 1e9);
  spdlog::debug("\n{}", graph.summary_table());
  Trainer trainer(config, config_yaml, graph, train, &test);
  return trainer.run(resume);
}

}  // namespace convnet::cli
