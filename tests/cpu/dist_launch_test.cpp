// Launch detection (core/dist/launch.h) from the variables Open MPI, MPICH and Slurm set, and
// open_replica_group's choices: alone, refused (train.distributed: off under a launcher), and the
// ranks' configs compared (check_same_on_all_ranks over thread-ranks).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/dist/launch.h"
#include "core/dist/open_group.h"
#include "tests/common/test_util.h"
#include "tests/common/thread_group.h"

namespace convnet {
namespace {

// Sets the given variables for one test and clears every launcher variable around it.
class LaunchEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { clear(); }
  void TearDown() override { clear(); }
  static void set(const char* name, const char* value) { setenv(name, value, 1); }
  static void clear() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_SIZE",
                          "PMI_RANK", "MPI_LOCALRANKID", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID"})
      unsetenv(v);
  }
};

TEST_F(LaunchEnvironment, AloneWithoutLauncherVariables) {
  const LaunchInfo l = detect_launch();
  EXPECT_EQ(l.size, 1);
  EXPECT_EQ(l.rank, 0);
  EXPECT_TRUE(l.launcher.empty());
}

TEST_F(LaunchEnvironment, OpenMpiMpichAndSlurm) {
  set("SLURM_STEP_NUM_TASKS", "8");
  set("SLURM_PROCID", "5");
  set("SLURM_LOCALID", "1");
  LaunchInfo l = detect_launch();
  EXPECT_EQ(l.launcher, "slurm");
  EXPECT_EQ(l.size, 8);
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.local_rank, 1);
  set("PMI_SIZE", "4");
  set("PMI_RANK", "2");
  EXPECT_EQ(detect_launch().launcher, "mpich");
  // mpirun inside a Slurm allocation: the job is mpirun's.
  set("OMPI_COMM_WORLD_SIZE", "2");
  set("OMPI_COMM_WORLD_RANK", "1");
  set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  l = detect_launch();
  EXPECT_EQ(l.launcher, "open-mpi");
  EXPECT_EQ(l.size, 2);
  EXPECT_EQ(l.rank, 1);
}

TEST_F(LaunchEnvironment, MalformedVariablesAreErrorsNamingThem) {
  set("OMPI_COMM_WORLD_SIZE", "two");
  set("OMPI_COMM_WORLD_RANK", "0");
  EXPECT_NE(testing::error_of([] { detect_launch(); }).find("OMPI_COMM_WORLD_SIZE='two'"), std::string::npos);
  set("OMPI_COMM_WORLD_SIZE", "2");
  set("OMPI_COMM_WORLD_RANK", "2");
  EXPECT_NE(testing::error_of([] { detect_launch(); }).find("the rank must be below the job's size"),
            std::string::npos);
}

TEST(OpenReplicaGroup, AloneIsASingleProcessAndOffUnderALauncherIsRefused) {
  TrainConfig train;
  EXPECT_EQ(open_replica_group(train, LaunchInfo{})->name(), "single");
  train.distributed = "off";
  EXPECT_EQ(open_replica_group(train, LaunchInfo{})->size(), 1);
  const LaunchInfo two{2, 0, 0, "open-mpi"};
  EXPECT_NE(testing::error_of<ConfigError>([&] {
              open_replica_group(train, two);
            }).find("train.distributed: off, but open-mpi started 2 ranks"),
            std::string::npos);
}

TEST(CheckSameOnAllRanks, PassesWhenEqualAndNamesTheLowestDifferingRankAndLine) {
  testing::run_ranks(3, [](ReplicaGroup& group) { check_same_on_all_ranks(group, "config", "a: 1\nb: 2\n"); });
  std::vector<std::string> errors(4);
  testing::run_ranks(4, [&](ReplicaGroup& group) {
    const std::string text = group.rank() >= 2 ? "a: 1\nb: 3\n" : "a: 1\nb: 2\n";
    errors[static_cast<size_t>(group.rank())] =
        testing::error_of<ConfigError>([&] { check_same_on_all_ranks(group, "config", text); });
  });
  EXPECT_NE(errors[0].find("the config of rank 2 differs from rank 0's"), std::string::npos) << errors[0];
  EXPECT_NE(errors[2].find("line 2: 'b: 3' here, 'b: 2' on rank 0"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("the config of rank 2"), std::string::npos) << errors[3];
}

}  // namespace
}  // namespace convnet
