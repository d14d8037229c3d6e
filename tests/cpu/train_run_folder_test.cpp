// RunFolder and OutputDirLock: one run per output folder at a time, a stale lock of a dead
// process taken over, a fresh run refused (or with overwrite, cleared) where a run already is,
// and temporaries of interrupted writes removed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/base/error.h"
#include "core/train/output_lock.h"
#include "core/train/run_folder.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

std::string error_of(const std::string& dir, RunStart start) {
  try {
    RunFolder folder(dir, start);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OutputDirLock, ASecondOwnerIsRefusedNamingTheFirstAndTheLockGoesWithItsOwner) {
  TempDir dir;
  {
    const OutputDirLock first(dir.path());
    EXPECT_EQ(read_file(first.path()).rfind(std::to_string(::getpid()) + " ", 0), 0u) << read_file(first.path());
    try {
      const OutputDirLock second(dir.path());
      FAIL() << "a second lock of one folder was granted";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("in use by another convnet train (pid " + std::to_string(::getpid())), std::string::npos)
          << what;
      EXPECT_NE(what.find(dir.path()), std::string::npos) << what;
    }
  }
  EXPECT_FALSE(fs::exists(dir.file(OutputDirLock::kFileName)));
  const OutputDirLock again(dir.path());
}

TEST(OutputDirLock, TheLockOfAKilledProcessIsTakenOver) {
  TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    new OutputDirLock(dir.path());  // never released: the process dies holding it
    ::kill(::getpid(), SIGKILL);
    _exit(1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(read_file(dir.file(OutputDirLock::kFileName)).rfind(std::to_string(child) + " ", 0), 0u);
  const OutputDirLock mine(dir.path());
  EXPECT_EQ(read_file(mine.path()).rfind(std::to_string(::getpid()) + " ", 0), 0u);
}

TEST(OutputDirLock, AnUncreatableLockFileIsAnErrorNamingIt) {
  TempDir dir;
  write_file(dir.file("file"), "not a folder");
  try {
    const OutputDirLock lock(dir.file("file"));
    FAIL() << "locked a folder that is a file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("file") + "/convnet.lock"), std::string::npos) << e.what();
  }
}

TEST(RunFolder, AFreshRunIsRefusedWhereARunIsAndOverwriteClearsIt) {
  TempDir dir;
  const std::string out = dir.file("run");
  { const RunFolder created(out, RunStart::fresh); }  // creates the folder
  EXPECT_TRUE(fs::is_directory(out));
  write_file(out + "/config.yaml", "a: 1\n");
  EXPECT_EQ(error_of(out, RunStart::fresh), "") << "config.yaml alone is not a run";
  write_file(out + "/metrics.jsonl", "{}\n");
  write_file(out + "/last.safetensors", "x");
  write_file(out + "/notes.txt", "the user's own file");
  const std::string refused = error_of(out, RunStart::fresh);
  EXPECT_NE(refused.find("already holds a run (metrics.jsonl, last.safetensors)"), std::string::npos) << refused;
  EXPECT_NE(refused.find("--resume " + out + "/last.safetensors"), std::string::npos) << refused;
  EXPECT_NE(refused.find("--overwrite"), std::string::npos) << refused;
  EXPECT_TRUE(fs::exists(out + "/metrics.jsonl"));
  EXPECT_EQ(error_of(out, RunStart::resume), "");
  EXPECT_TRUE(fs::exists(out + "/metrics.jsonl"));
  EXPECT_EQ(error_of(out, RunStart::overwrite), "");
  for (const std::string& name : run_file_names()) EXPECT_FALSE(fs::exists(out + "/" + name)) << name;
  EXPECT_TRUE(fs::exists(out + "/notes.txt")) << "only the run's own files are deleted";
}

TEST(RunFolder, TemporariesOfInterruptedWritesAreRemoved) {
  TempDir dir;
  // Writers' pids above the kernel's limit (2^22): processes that cannot be running.
  write_file(dir.file("last.safetensors.tmp.4194305"), "half a checkpoint");
  write_file(dir.file("metrics.jsonl.tmp.4194306"), "half");
  write_file(dir.file("mine.tmp.1"), "not ours");
  const RunFolder folder(dir.path(), RunStart::resume);
  EXPECT_FALSE(fs::exists(dir.file("last.safetensors.tmp.4194305")));
  EXPECT_FALSE(fs::exists(dir.file("metrics.jsonl.tmp.4194306")));
  EXPECT_TRUE(fs::exists(dir.file("mine.tmp.1")));
}

TEST(RunFolder, AnUncreatableFolderIsAnErrorNamingIt) {
  TempDir dir;
  write_file(dir.file("file"), "x");
  const std::string e = error_of(dir.file("file") + "/run", RunStart::fresh);
  EXPECT_NE(e.find("output.dir '" + dir.file("file") + "/run': cannot create"), std::string::npos) << e;
}

}  // namespace
}  // namespace convnet
