// NCCL as the device transport of a data-parallel group (core/dist/device_collectives.h): gradient
// buckets on this rank's GPU are averaged with ncclAllReduce (ncclAvg) on a stream of NCCL's own,
// ordered after the compute stream by an event per bucket, and the compute stream waits for each
// bucket's event before the gradients are read again. As in PyTorch DDP and llm.c, MPI starts and
// connects the processes: rank 0's ncclUniqueId reaches the others over the host group.
//
// Built when NCCL is found (cuda/CMakeLists.txt: a CUDA install, NCCL_ROOT, or PyTorch's pip wheel
// nvidia-nccl-cu*); otherwise open_nccl throws and nccl_version() is empty. The implementation is
// in cuda/nccl/. No NCCL type appears here, so tools/ can call it in every build.
#pragma once

#include <memory>
#include <string>

#include "core/dist/device_collectives.h"
#include "core/dist/replica_group.h"

namespace convnet::cuda {

// "2.28.9" for the NCCL library loaded; empty when this build has no NCCL.
std::string nccl_version();

// NCCL across the ranks of `host`, one GPU per rank: this rank's is `device_index`. A collective
// (every rank calls it, in the same order as the other collectives). The communicator is created
// non-blocking; creating it, and every all-reduce, must finish within `timeout_s` or the call
// throws convnet::Error naming the step (a rank died or hangs), after aborting the communicator.
std::unique_ptr<DeviceCollectives> open_nccl(ReplicaGroup& host, int device_index, double timeout_s);

}  // namespace convnet::cuda
