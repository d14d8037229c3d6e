#include "core/dist/open_group.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <sstream>
#include <vector>

#include "core/base/error.h"
#include "core/dist/mpi_group.h"

namespace convnet {

namespace {

void log_as_rank(int rank, int size) {
  spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}/{}] %^%l%$ %v", rank, size));  // log.cpp's, plus the rank
  if (rank > 0 && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);  // rank 0 reports
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// "line 7: 'batch_size: 64' here, 'batch_size: 128' on rank 0"
std::string first_difference(const std::string& mine, const std::string& root) {
  const std::vector<std::string> a = lines_of(mine), b = lines_of(root);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "(end)", y = i < b.size() ? b[i] : "(end)";
    if (x != y) return fmt::format("line {}: '{}' here, '{}' on rank 0", i + 1, x, y);
  }
  return "they differ";
}

}  // namespace

std::unique_ptr<ReplicaGroup> open_replica_group(const TrainConfig& train, const LaunchInfo& launch) {
  if (launch.size <= 1) return std::make_unique<SingleProcess>();
  if (train.distributed == "off")
    throw ConfigError(fmt::format(
        "train.distributed: off, but {} started {} ranks of this command: each would train alone into the same "
        "output.dir. Start one process, or set train.distributed: auto",
        launch.launcher, launch.size));
  std::unique_ptr<ReplicaGroup> group = open_mpi_group(train.distributed_timeout);
  if (group->size() != launch.size || group->rank() != launch.rank)
    throw Error(
        fmt::format("MPI sees rank {} of {}, but the launcher ({}) set rank {} of {}: was convnet built "
                    "against the MPI that launched it?",
                    group->rank(), group->size(), launch.launcher, launch.rank, launch.size));
  log_as_rank(group->rank(), group->size());
  spdlog::info("data-parallel: {} ranks over {} ({}), launched by {}", group->size(), group->name(),
               mpi_library_version(), launch.launcher);
  return group;
}

void check_same_on_all_ranks(ReplicaGroup& group, const std::string& what, const std::string& text) {
  if (group.size() == 1) return;
  std::string root = text;
  group.broadcast(root);
  // The lowest differing rank, as a max over -rank (ranks that agree give -size).
  const bool differs = root != text;
  std::array<double, 1> lowest = {differs ? -static_cast<double>(group.rank()) : -static_cast<double>(group.size())};
  group.max(lowest);
  const int rank = static_cast<int>(-lowest[0]);
  if (rank == group.size()) return;
  if (differs && rank == group.rank())
    throw ConfigError(fmt::format("the {} of rank {} differs from rank 0's ({}); every rank must run the same", what,
                                  rank, first_difference(text, root)));
  throw ConfigError(
      fmt::format("the {} of rank {} differs from rank 0's (rank {} names the line); every rank must "
                  "run the same",
                  what, rank, rank));
}

}  // namespace convnet
