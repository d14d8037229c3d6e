// The small run of the data-parallel tests (tests/cpu/app_data_parallel_test.cpp on thread-ranks,
// cli_mpirun_test.cpp under mpirun): 20 steps of a small VGG on synthetic data, about a second.
// No batchnorm (per-rank statistics differ from the global batch's) and no dropout: with these,
// N ranks compute the single-process gradient up to summation order.
#pragma once

namespace convnet::testing {

inline constexpr const char* kDataParallelConfig = R"(
model: {name: vgg, cfg: [8, M, 16, M], batch_norm: false, pool: avg}
data:
  dataset: synthetic
  synthetic_train_size: 512
  synthetic_test_size: 100
  synthetic_image_size: 16
  workers: 1
  augment: {crop_padding: 1, flip: true}
optimizer: {lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
schedule: {name: linear, warmup_epochs: 0.2}
train: {epochs: 1, max_steps: 20, batch_size: 16, seed: 5, log_every: 5, threads: 1, backend: cpu}
output: {plot: none}
)";

}  // namespace convnet::testing
