// GradientReducer: data-parallel gradient averaging (issue 13). After backward, every rank's
// parameter gradients are replaced by their mean over the ranks, so every rank takes the same SGD
// step: with each rank's loss the mean over its equal shard of the global batch, that mean is the
// gradient one process would compute on the whole batch.
//
// Buckets: the trainable parameters are grouped in reverse layer order into buckets of about
// `bucket_bytes` (the last layers' first, as backward produces them). The graph's backward hook
// starts a bucket's sum (ReplicaGroup::start_sum) as soon as the backward of its lowest layer has
// run, so the transfer overlaps with the backward of the earlier layers (PyTorch DDP's scheme);
// finish() waits for the buckets in order and writes the means back. Gradients on a device go
// through the group's device transport when it has one that serves them (NCCL:
// ReplicaGroup::device_collectives, a DeviceBucket per bucket, no host copies), else through a host
// staging copy (the MPI transport sums host memory). A bucket holds gradients of one kind only.
//
// Determinism: the buckets, their order and their contents are fixed by the graph, and every sum
// is the group's fixed-order reduction, so the result never depends on timing.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/dist/device_collectives.h"
#include "core/dist/replica_group.h"
#include "core/train/graph.h"

namespace convnet {

// How the trainable parameters of a graph fall into buckets: in reverse layer order, a bucket
// closing once it holds `bucket_bytes` or when the next gradient is of the other kind
// (`on_device`: served by the device transport). Each bucket is complete once backward has run its
// lowest layer, `first_layer`. Used by GradientReducer and by `convnet benchmark --ranks`.
struct GradientBucketPlan {
  size_t first_layer = 0;
  size_t floats = 0;
  bool on_device = false;
  std::vector<std::pair<size_t, Parameter*>> parameters;  // (layer, parameter), in backward order
};
std::vector<GradientBucketPlan> plan_gradient_buckets(Graph& graph, size_t bucket_bytes,
                                                      const std::function<bool(const Tensor&)>& on_device);

class GradientReducer {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t{25} << 20;  // DDP's default

  // Installs itself as `graph`'s backward hook (removed on destruction); both must outlive it.
  // Frozen parameters are left out (their gradients are never used).
  GradientReducer(Graph& graph, ReplicaGroup& group, size_t bucket_bytes = kDefaultBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // After Graph::backward(): waits for every bucket and writes the rank mean into each gradient.
  void finish();

  size_t num_buckets() const { return buckets_.size(); }
  size_t num_device_buckets() const;  // those summed by the device transport
  size_t bytes() const;               // gradient bytes summed per step

 private:
  struct Entry {
    Parameter* parameter;
    Backend* backend;
    size_t offset;   // into the bucket's buffer, in floats
    Tensor staging;  // host copy of a device gradient (undefined for host gradients)
  };
  struct Bucket {
    size_t first_layer = 0;  // the lowest layer with a parameter here: the bucket is complete after it
    size_t floats = 0;
    std::vector<Entry> entries;
    std::vector<float> buffer;             // host transport: the gradients, packed
    std::unique_ptr<PendingSum> pending;   // host transport: the sum in flight
    std::unique_ptr<DeviceBucket> device;  // device transport (then buffer and pending stay empty)
  };
  void add_buckets(Graph& graph, size_t bucket_bytes);
  void layer_done(size_t layer);
  void start(Bucket& bucket);
  void write_back(Bucket& bucket);

  Graph& graph_;
  ReplicaGroup& group_;
  std::vector<Bucket> buckets_;  // in the order backward completes them
  size_t next_ = 0;              // the next bucket to start this step
};

}  // namespace convnet
