// Checkpoint loading into built graphs: any bytes as a checkpoint file, loaded into each model of
// fuzz_models.h twice, as `convnet evaluate` loads (model tensors only) and as `--resume` does
// (with the optimizer and the weight average). A checkpoint of one model is rejected by the
// others at their first missing tensor, so each input reaches every model's checks.
#include <memory>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/train/checkpoint.h"
#include "tests/fuzz/fuzz_models.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

std::unique_ptr<Backend> backend;
std::vector<std::unique_ptr<fuzz::FuzzModel>> models;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_cpu_threads(1);  // libFuzzer runs one input at a time; -jobs/-workers parallelise instead
  backend = make_cpu_backend();
  models = fuzz::build_fuzz_models(*backend, CONVNET_SOURCE_DIR);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  const std::string path = scratch.write("input.safetensors", fuzz::as_text(data, size));
  for (const auto& model : models) {
    fuzz::loads_or_rejects([&] { (void)load_checkpoint(path, model->graph, nullptr); });
    WeightAverage* average = model->average ? &*model->average : nullptr;
    fuzz::loads_or_rejects([&] { (void)load_checkpoint(path, model->graph, &*model->optimizer, average); });
  }
  return 0;
}
