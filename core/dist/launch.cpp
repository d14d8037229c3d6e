#include "core/dist/launch.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "core/base/error.h"

namespace convnet {

namespace {

// The integer in environment variable `name`, or -1 when it is not set.
int env_int(const char* name) {
  const char* text = std::getenv(name);
  if (!text) return -1;
  int value = -1;
  const char* end = text + std::strlen(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || value < 0)
    throw Error(fmt::format("environment variable {}='{}': expected a non-negative integer", name, text));
  return value;
}

struct LauncherVariables {
  const char* launcher;
  const char* size;
  const char* rank;
  const char* local_rank;
};

// In order of preference: mpirun's own variables before Slurm's, since mpirun inside a Slurm
// allocation sees both and the job is mpirun's.
constexpr LauncherVariables kLaunchers[] = {
    {"open-mpi", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"mpich", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"},
    {"slurm", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID"},  // the step's: a batch script is 1 task
};

}  // namespace

LaunchInfo detect_launch() {
  for (const LauncherVariables& v : kLaunchers) {
    const int size = env_int(v.size), rank = env_int(v.rank);
    if (size < 0 || rank < 0) continue;
    if (size == 0 || rank >= size)
      throw Error(fmt::format("{}={} and {}={}: the rank must be below the job's size", v.rank, rank, v.size, size));
    return {size, rank, std::max(env_int(v.local_rank), 0), v.launcher};
  }
  return {};
}

}  // namespace convnet
