// DeviceCollectives: a ReplicaGroup's transport for tensors in GPU memory (NCCL, built in cuda/), so
// that gradients are averaged on the device without host copies. torch.distributed pairs a cpu
// transport (gloo) with a cuda one (nccl) in one process group the same way: the ReplicaGroup's own
// collectives stay on the host (statistics, signals, broadcasts); gradient buckets whose tensors
// live on the transport's device go through it.
//
// Contract of a DeviceBucket (every rank makes the same buckets, in the same order, with the same
// tensor sizes):
// - start() is called once the bucket's gradients are final in the compute stream's order (after
//   their layers' backward was queued). It does not wait for the device: it gathers the gradients
//   into one flat device buffer and starts its all-reduce, ordered after the compute work queued so
//   far, on a stream of its own, so the transfer overlaps with the earlier layers' backward.
// - finish() makes the compute stream wait for the all-reduce (an event, no host round trip for the
//   data) and writes the mean over the ranks back into each gradient. It waits on the host until the
//   all-reduce is done or the group's timeout passes; a timeout or a transport error is an Error
//   naming the bucket (a rank died or hangs), after which the job must end (ReplicaGroup::abort_job).
// - Deterministic: a fixed reduction order for a fixed number of ranks and topology.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/base/tensor.h"

namespace convnet {

class DeviceBucket {
 public:
  virtual ~DeviceBucket() = default;
  virtual void start() = 0;
  virtual void finish() = 0;
};

class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  virtual std::string name() const = 0;  // "nccl 2.28.9"
  // Whether `t` lives where this transport sums (the rank's GPU).
  virtual bool serves(const Tensor& t) const = 0;
  // A bucket of f32 gradients, all served; they must outlive the bucket.
  virtual std::unique_ptr<DeviceBucket> make_bucket(std::vector<Tensor*> gradients) = 0;
};

}  // namespace convnet
