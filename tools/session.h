// Wiring shared by the subcommands: the data and the training run, from one Config. The backends and
// the model graph (convnet/backends.h, convnet/model_graph.h) are the library's, shared with it.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "convnet/backends.h"
#include "convnet/model_graph.h"
#include "core/base/backend.h"
#include "core/config/config.h"
#include "core/dist/device_collectives.h"
#include "core/dist/launch.h"
#include "core/dist/replica_group.h"
#include "core/train/graph.h"
#include "core/train/trainer.h"
#include "datasets/image_dataset.h"

namespace convnet::cli {

// The test split alone (evaluation needs no training images), with data.test_limit applied.
ImageDataset load_test_split(const DataConfig& data, uint64_t seed, int threads);

// The GPU of a data-parallel rank: its local rank's, round robin over the machine's GPUs (0 alone).
int gpu_of_rank(const LaunchInfo& launch);

// The device transport of a data-parallel run whose parameters are on GPU `gpu_index` (NCCL when
// built in); null with one rank, on the cpu, or without NCCL. A collective.
std::unique_ptr<DeviceCollectives> open_device_transport(const TrainConfig& train, Graph& graph, ReplicaGroup& group,
                                                         int gpu_index);

// How to spell this convnet executable in a command printed for the user to run: its absolute
// path (/proc/self/exe), or "convnet" where that is unknown.
std::string program_path();

// How a run starts: fresh (the default), from a checkpoint (`resume`), or fresh from another
// file's weights (`init_from`, not with `resume`: load_model_weights instead of the initialisation).
struct TrainStart {
  std::string resume;
  std::string init_from;
  bool overwrite = false;  // a fresh run may replace the run already in output.dir
};

// Everything `convnet train` does after parsing: the output folder (RunFolder: locked; a fresh
// run refuses a folder holding a run unless `overwrite`), data, loaders, graph, Trainer::run.
// `config_yaml` is the effective config saved with the run. Under an MPI launcher (train.distributed:
// auto) this process is one rank of a data-parallel job (core/dist/open_group.h): it takes its
// shard of every batch and the GPU of its local rank; the ranks' configs and data must match; an
// error on any rank ends every rank. Rank 0 alone prepares and locks the folder.
TrainResult run_training(const Config& config, const std::string& config_yaml, const TrainStart& start = {});
// The same as one rank of `group` (tests run ranks as threads, tests/common/thread_group.h), with
// the GPU backends on GPU `gpu_index`.
TrainResult run_training(const Config& config, const std::string& config_yaml, const TrainStart& start,
                         ReplicaGroup& group, int gpu_index = 0);

}  // namespace convnet::cli
