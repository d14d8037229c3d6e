// Writes a checkpoint of each model in fuzz_models.h (freshly initialised, with the optimizer and
// weight-average state a training run saves) into OUT_DIR/<model>.safetensors: real VGG-11 and
// fast94 checkpoints for the checkpoint fuzzer's corpus replay, generated in the build because
// they are too large to commit (VGG-11: ~75 MB with momentum buffers).
#include <cstdio>
#include <filesystem>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/train/checkpoint.h"
#include "tests/fuzz/fuzz_models.h"
#include "tests/fuzz/fuzz_util.h"

int main(int argc, char** argv) {
  using namespace convnet;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    fuzz::quiet_logging();
    std::filesystem::create_directories(argv[1]);
    auto backend = make_cpu_backend();
    for (const auto& model : fuzz::build_fuzz_models(*backend, CONVNET_SOURCE_DIR)) {
      TrainingState state;
      state.config_yaml = to_yaml(model->config);
      WeightAverage* average = model->average ? &*model->average : nullptr;
      save_checkpoint(std::string(argv[1]) + "/" + model->name + ".safetensors", model->graph, &*model->optimizer,
                      state, average);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "make_checkpoint_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
