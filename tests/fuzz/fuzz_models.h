// The models the checkpoint fuzzer loads into, each built as a training run builds it (config
// file -> graph on the cpu backend, the run's optimizer and weight average): the tiny run whose
// checkpoint seeds the corpus (tests/fuzz/tiny_run.yaml) and the shipped VGG-11 and fast94
// (configs/vgg11_bn.yaml, configs/fast94.yaml). make_checkpoint_seeds writes their checkpoints.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/config/config.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/graph.h"

namespace convnet::fuzz {

struct FuzzModel {
  std::string name;  // "tiny_run", "vgg11_bn", "fast94"
  Config config;
  Graph graph;
  std::optional<Sgd> optimizer;
  std::optional<WeightAverage> average;  // when config.ema.mode is not none
};

// Builds the three models on `backend` (which must outlive them), with configs read from
// `source_dir` (the project root). Throws Error when a config does not load or build.
std::vector<std::unique_ptr<FuzzModel>> build_fuzz_models(Backend& backend, const std::string& source_dir);

}  // namespace convnet::fuzz
