// How this process was started: alone, or as one rank of a job by an MPI launcher (mpirun/mpiexec
// of Open MPI or MPICH, Slurm's srun). Read from the variables the launchers set, before MPI is
// initialised, so a build without MPI can still tell that it was asked to run data-parallel.
#pragma once

#include <string>

namespace convnet {

struct LaunchInfo {
  int size = 1;          // ranks in the job
  int rank = 0;          // this process's rank
  int local_rank = 0;    // its rank among the job's processes on this machine (which GPU it takes)
  std::string launcher;  // "open-mpi", "mpich", "slurm"; empty when started alone
};

// The environment's launch; variables that are present but not numbers, or a rank outside the
// size, are an Error naming the variable.
LaunchInfo detect_launch();

}  // namespace convnet
