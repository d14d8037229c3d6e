// MpiGroup: the ReplicaGroup of the processes of an MPI job (MPI_COMM_WORLD), for `mpirun -np N
// convnet train ...` or `srun`. The only file that includes mpi.h is mpi_group.cpp; it is built
// when CMake finds MPI (CONVNET_HAVE_MPI).
//
// Every collective is MPI's non-blocking form, polled with MPI_Test until it completes or the
// timeout passes; a timeout (a peer died without the launcher noticing, or hangs) logs which
// collective on which rank and ends the job with MPI_Abort, so no rank waits for ever.
// Determinism: MPI_SUM on floats is reduced by the algorithm Open MPI's tuned component selects
// from the communicator size and message size, never from arrival order, so two runs with the
// same ranks give bit-identical sums (with 2 ranks a + b is exact in any order anyway).
#pragma once

#include <memory>

#include "core/dist/replica_group.h"

namespace convnet {

// Whether this build has MPI ("Open MPI v4.1.4" style version text, or empty).
std::string mpi_library_version();

// Initialises MPI (once per process; finalised when the group is destroyed) and returns the
// group of MPI_COMM_WORLD. timeout_seconds bounds every collective (train.distributed_timeout).
// Throws Error when the build has no MPI or MPI fails to start.
std::unique_ptr<ReplicaGroup> open_mpi_group(double timeout_seconds);

}  // namespace convnet
