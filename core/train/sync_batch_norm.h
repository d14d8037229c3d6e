// model.sync_batch_norm: every batchnorm of a graph normalizes with the statistics of all ranks
// (BatchNorm2d::set_replica_group).
#pragma once

#include "core/dist/replica_group.h"
#include "core/train/graph.h"

namespace convnet {

// Sets `group` on every BatchNorm2d of the built `graph` and returns how many there are. `group`
// must outlive the graph's training; every rank must call this alike (the layers' forward and
// backward become collectives).
int use_sync_batch_norm(Graph& graph, ReplicaGroup& group);

}  // namespace convnet
