// The ReplicaGroup a training run joins: the process alone, or the MPI job that launched it
// (train.distributed: auto). Logging is set up for the rank (rank 0 alone logs at info; the others
// log warnings and errors, prefixed with their rank).
#pragma once

#include <memory>

#include "core/config/config.h"
#include "core/dist/launch.h"
#include "core/dist/replica_group.h"

namespace convnet {

// auto: SingleProcess when started alone (or as a job of one rank), MpiGroup under a launcher
// with several ranks. off: SingleProcess; several ranks are then a ConfigError (each would train
// alone and all would write the same output folder). Error when MPI is needed but not built in,
// or when MPI's world disagrees with the launcher's variables.
std::unique_ptr<ReplicaGroup> open_replica_group(const TrainConfig& train, const LaunchInfo& launch = detect_launch());

// Stops every rank with a ConfigError unless `text` (a config, a data fingerprint) is the same on
// every rank; the message names `what`, the lowest rank that differs from rank 0 and the first
// line that differs. A collective: every rank calls it.
void check_same_on_all_ranks(ReplicaGroup& group, const std::string& what, const std::string& text);

}  // namespace convnet
