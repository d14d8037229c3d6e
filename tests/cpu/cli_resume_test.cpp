// `convnet train` runs that stop and continue: a resume keeps the checkpoint's config (refusing
// other values of the keys that change the run), the interrupt hint is a command that works, a
// folder holds one run (refusing a fresh run and a concurrent one), SIGKILL at any moment leaves
// a checkpoint that loads and resumes to the uninterrupted run, and a full disk or an unwritable
// folder is an error naming the path with the previous checkpoint intact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/train/metrics_log.h"
#include "tests/common/app_test_util.h"
#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::run_convnet;
using testing::run_program;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;
using Clock = std::chrono::steady_clock;

// 8 steps per epoch at batch 32.
const char* kConfig = R"(model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 256, synthetic_test_size: 64, synthetic_image_size: 8}
optimizer: {lr: 0.05}
train: {epochs: 2, batch_size: 32, seed: 1, threads: 2, log_every: 4}
)";

class CliResume : public ::testing::Test {
 protected:
  void SetUp() override { write_file(config_, kConfig); }
  std::string train_args(const std::string& run, const std::string& extra = "") const {
    return "train " + config_ + " --set output.dir=" + dir_.file(run) + " " + extra;
  }
  std::string last(const std::string& run) const { return dir_.file(run + "/last.safetensors"); }
  int64_t step_of(const std::string& checkpoint) const {
    const RunResult info = run_convnet("info '" + checkpoint + "' --json");
    EXPECT_EQ(info.exit_code, 0) << info.err;
    return info.exit_code == 0 ? nlohmann::json::parse(info.out).at("step").get<int64_t>() : -1;
  }

  TempDir dir_;
  std::string config_ = dir_.file("run.yaml");
};

// Starts `convnet ARGS...` in the background, its output into `log`.
pid_t start_convnet(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  dup2(fd, STDOUT_FILENO);
  dup2(fd, STDERR_FILENO);
  std::vector<char*> argv = {const_cast<char*>(CONVNET_BINARY)};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(CONVNET_BINARY, argv.data());
  _exit(127);
}

void wait_for_file(const std::string& path) {
  for (int i = 0; i < 600 && !fs::exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(fs::exists(path)) << path;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST_F(CliResume, AResumeKeepsTheCheckpointsConfigAndRefusesAnotherOne) {
  ASSERT_EQ(run_convnet(train_args("a", "--set train.batch_size=16 --set train.max_steps=4")).exit_code, 0);
  // The config file without the run's --set: the batch size would silently change back.
  const RunResult with_file = run_convnet(train_args("a", "--resume " + last("a")));
  EXPECT_EQ(with_file.exit_code, 2);
  EXPECT_NE(with_file.err.find("train.batch_size: the checkpoint has 16, now 32"), std::string::npos) << with_file.err;
  const RunResult with_set = run_convnet("train --resume " + last("a") + " --set train.batch_size=8");
  EXPECT_EQ(with_set.exit_code, 2);
  EXPECT_NE(with_set.err.find("train.batch_size: the checkpoint has 16, now 8"), std::string::npos) << with_set.err;
  EXPECT_EQ(step_of(last("a")), 4) << "a refused resume trains nothing";
  // Without CONFIG the checkpoint's config continues, with the keys a resume may change.
  const RunResult ok = run_convnet("train --resume " + last("a") + " --set train.max_steps=0 --set train.epochs=3");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(step_of(last("a")), 3 * 16);
  const Config saved = load_config(dir_.file("a/config.yaml"));
  EXPECT_EQ(saved.train.batch_size, 16);
  EXPECT_EQ(saved.train.epochs, 3);
}

TEST_F(CliResume, UsageMistakesExitWithTwo) {
  EXPECT_EQ(run_convnet("train").exit_code, 2) << "neither CONFIG nor --resume";
  ASSERT_EQ(run_convnet(train_args("a", "--set train.max_steps=2")).exit_code, 0);
  EXPECT_EQ(run_convnet("train --resume " + last("a") + " --overwrite").exit_code, 2);
}

TEST_F(CliResume, TheInterruptHintIsACommandThatFinishesTheRun) {
  // A folder name that needs quoting, and --set values the hint does not repeat.
  const std::string out = dir_.file("my run");
  const pid_t pid = start_convnet(
      {"train", config_, "--set", "output.dir=" + out, "--set", "train.batch_size=16", "--set", "train.epochs=60"},
      dir_.file("child.log"));
  ASSERT_GT(pid, 0);
  wait_for_file(out + "/last.safetensors");
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 128 + SIGINT);
  const std::string log = read_file(dir_.file("child.log"));
  const std::string marker = "continue with: ";
  const size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  const std::string hint = log.substr(at + marker.size(), log.find('\n', at) - at - marker.size());
  const RunResult resumed = run_program(hint, "");
  ASSERT_EQ(resumed.exit_code, 0) << hint << "\n" << resumed.err;
  EXPECT_EQ(step_of(out + "/last.safetensors"), 60 * 16) << "the run finished with its own batch size and epochs";
}

TEST_F(CliResume, AFreshRunIntoAFolderHoldingARunIsRefusedUnlessOverwriting) {
  ASSERT_EQ(run_convnet(train_args("a", "--set train.max_steps=3")).exit_code, 0);
  const std::string metrics = read_file(dir_.file("a/metrics.jsonl"));
  const RunResult again = run_convnet(train_args("a", "--set train.max_steps=3"));
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("already holds a run"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--resume " + last("a")), std::string::npos) << again.err;
  EXPECT_EQ(read_file(dir_.file("a/metrics.jsonl")), metrics);
  ASSERT_EQ(run_convnet(train_args("a", "--set train.max_steps=2 --overwrite")).exit_code, 0);
  EXPECT_EQ(read_metrics(dir_.file("a/metrics.jsonl")).size(), 1u) << "only the new run's line (step 2)";
}

TEST_F(CliResume, ASecondRunIntoTheSameFolderIsRefusedAndAKilledRunsLockTakenOver) {
  const pid_t first =
      start_convnet({"train", config_, "--set", "output.dir=" + dir_.file("a"), "--set", "train.epochs=100000"},
                    dir_.file("first.log"));
  ASSERT_GT(first, 0);
  wait_for_file(last("a"));
  const RunResult second = run_convnet("train --resume " + last("a") + " --set train.max_steps=1");
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("in use by another convnet train (pid " + std::to_string(first)), std::string::npos)
      << second.err;
  kill(first, SIGKILL);
  EXPECT_EQ(wait_exit(first), -SIGKILL);
  const int64_t step = step_of(last("a"));
  const RunResult third =
      run_convnet("train --resume " + last("a") + " --set train.max_steps=" + std::to_string(step + 2));
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find("taking over the lock"), std::string::npos) << third.err;
  EXPECT_NE(third.err.find("pid " + std::to_string(first)), std::string::npos) << third.err;
  EXPECT_EQ(step_of(last("a")), step + 2);
}

// The (split, step) of every metrics line.
std::vector<std::pair<std::string, int64_t>> metrics_keys(const std::string& path) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const MetricsRecord& r : read_metrics(path)) out.emplace_back(r.split, r.step);
  return out;
}

TEST_F(CliResume, SigkillAtRandomMomentsAlwaysLeavesACheckpointThatResumesToTheSameRun) {
  const std::string run = " --set train.epochs=6 --set train.checkpoint_every=1";
  const Clock::time_point straight_start = Clock::now();
  ASSERT_EQ(run_convnet(train_args("straight", run)).exit_code, 0);
  // Kill moments scale with the uninterrupted run, so that a loaded machine (slow start-up) still
  // sees kills after checkpoints; a run that finishes before its kill starts over until enough
  // kills have landed after a checkpoint.
  const auto straight_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - straight_start).count();
  std::mt19937 rng(20261203);
  std::uniform_int_distribution<int64_t> delay_ms(0, std::max<int64_t>(straight_ms * 2 / 3, 150));
  const auto budget = std::max(std::chrono::milliseconds(30000), std::chrono::milliseconds(25 * straight_ms));
  const Clock::time_point start = Clock::now();
  int kills = 0, resumes = 0, restarts = 0;  // resumes: of the run that is compared at the end
  for (; kills < 60 && Clock::now() - start < budget; ++kills) {
    std::vector<std::string> args = {"train", config_,          "--set", "output.dir=" + dir_.file("killed"),
                                     "--set", "train.epochs=6", "--set", "train.checkpoint_every=1"};
    if (fs::exists(last("killed"))) {
      args = {"train", "--resume", last("killed")};
      ++resumes;
    } else if (kills > 0) {
      args.push_back("--overwrite");  // killed before its first checkpoint
    }
    const pid_t pid = start_convnet(args, dir_.file("killed.log"));
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    kill(pid, SIGKILL);
    const int code = wait_exit(pid);
    ASSERT_TRUE(code == -SIGKILL || code == 0) << "exit " << code << "\n" << read_file(dir_.file("killed.log"));
    if (code == 0) {  // finished before the kill
      if (resumes >= 3) break;
      fs::remove_all(dir_.file("killed"));
      resumes = 0;
      ++restarts;
      continue;
    }
    if (fs::exists(last("killed"))) {
      ASSERT_GE(step_of(last("killed")), 1) << "after kill " << kills;
    }
  }
  RecordProperty("kills", kills);
  RecordProperty("resumes", resumes);
  RecordProperty("restarts", restarts);
  EXPECT_GE(resumes, 3) << "too few kills landed after a checkpoint to test resuming";
  ASSERT_TRUE(fs::exists(last("killed"))) << "no kill after " << kills << " runs landed after a checkpoint";
  if (step_of(last("killed")) < 48) {
    const RunResult finish = run_convnet("train --resume " + last("killed"));
    ASSERT_EQ(finish.exit_code, 0) << finish.err;
  }
  testing::expect_same_checkpoint(last("straight"), last("killed"));
  EXPECT_EQ(metrics_keys(dir_.file("killed/metrics.jsonl")), metrics_keys(dir_.file("straight/metrics.jsonl")))
      << "after " << kills << " kills";
  for (const fs::directory_entry& e : fs::directory_iterator(dir_.file("killed")))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// A file-size limit (ulimit -f, in 512-byte blocks for sh) stands in for a full disk: the
// checkpoint is larger than it, the metrics lines are not.
TEST_F(CliResume, AFullDiskIsAnErrorNamingTheCheckpointWhichStaysIntact) {
  ASSERT_EQ(run_convnet(train_args("a", "--set train.max_steps=4 --set output.plot=none")).exit_code, 0);
  const std::string before = read_file(last("a"));
  ASSERT_GT(before.size(), 8u * 1024) << "the checkpoint must be larger than the limit";
  const RunResult full = run_program("ulimit -f 16; " + std::string(CONVNET_BINARY),
                                     "train --resume " + last("a") + " --set train.max_steps=6");
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_NE(full.err.find("cannot save the checkpoint '" + last("a") + "' at step 6"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("the previous one there (step 4) is intact"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("File too large"), std::string::npos) << full.err;
  EXPECT_EQ(read_file(last("a")), before);
  for (const fs::directory_entry& e : fs::directory_iterator(dir_.file("a")))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  ASSERT_EQ(run_convnet("train --resume " + last("a") + " --set train.max_steps=6").exit_code, 0);
  EXPECT_EQ(step_of(last("a")), 6);
}

// Root writes anywhere: as root the commands run as nobody (setpriv), to whom the folder is not
// writable.
std::string unprivileged(const std::string& command) {
  if (::geteuid() != 0) return command;
  return "setpriv --reuid=65534 --regid=65534 --clear-groups " + command;
}

TEST_F(CliResume, AnUnwritableFolderIsAnErrorNamingItWithNothingLost) {
  if (::geteuid() == 0 && std::system("setpriv --version >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "running as root without setpriv to drop the privilege";
  ASSERT_EQ(run_convnet(train_args("a", "--set train.max_steps=4")).exit_code, 0);
  const std::string before = read_file(last("a"));
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::permissions(dir_.file("a"), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                      fs::perms::others_read | fs::perms::others_exec);
  if (::geteuid() != 0) fs::permissions(dir_.file("a"), fs::perms::owner_write, fs::perm_options::remove);
  const RunResult resume =
      run_program(unprivileged(CONVNET_BINARY), "train --resume " + last("a") + " --set train.max_steps=6");
  EXPECT_EQ(resume.exit_code, 1) << resume.err;
  EXPECT_NE(resume.err.find(dir_.file("a/convnet.lock")), std::string::npos) << resume.err;
  EXPECT_NE(resume.err.find("Permission denied"), std::string::npos) << resume.err;
  const RunResult fresh = run_program(unprivileged(CONVNET_BINARY), train_args("a/new"));
  EXPECT_EQ(fresh.exit_code, 1) << fresh.err;
  EXPECT_NE(fresh.err.find("output.dir '" + dir_.file("a/new") + "': cannot create"), std::string::npos) << fresh.err;
  fs::permissions(dir_.file("a"), fs::perms::owner_write, fs::perm_options::add);
  EXPECT_EQ(read_file(last("a")), before);
  EXPECT_EQ(step_of(last("a")), 4);
}

// A real full file system: a small tmpfs (needs the privilege to mount; skipped without it).
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    fs::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(CliResume, ANoSpaceLeftDiskIsAnErrorNamingTheCheckpointWhichStaysIntact) {
  const TmpfsMount disk(dir_.file("disk"), "1m");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)";
  ASSERT_EQ(run_convnet(train_args("disk/a", "--set train.max_steps=4 --set output.plot=none")).exit_code, 0);
  const std::string before = read_file(dir_.file("disk/a/last.safetensors"));
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(dir_.file("disk").c_str(), &vfs), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  ASSERT_GT(free_bytes, 16u * 1024);
  write_file(dir_.file("disk/filler"), std::string(free_bytes - 12 * 1024, 'x'));  // room for all but the checkpoint
  const RunResult full =
      run_convnet("train --resume " + dir_.file("disk/a/last.safetensors") + " --set train.max_steps=6");
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find(dir_.file("disk/a/")), std::string::npos) << full.err;
  EXPECT_EQ(read_file(dir_.file("disk/a/last.safetensors")), before);
}

}  // namespace
}  // namespace convnet
