#include "core/train/sync_batch_norm.h"

#include <cstddef>

#include "core/layers/batch_norm.h"

namespace convnet {

int use_sync_batch_norm(Graph& graph, ReplicaGroup& group) {
  int count = 0;
  for (size_t i = 0; i < graph.size(); ++i)
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&graph.layer(i))) {
      bn->set_replica_group(&group);
      ++count;
    }
  return count;
}

}  // namespace convnet
