// Atomic file replacement: the target holds either the old or the new content, and a failed write
// leaves no temporary file behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::TempDir;

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Resets the fault hook even when an assertion fails midway.
struct FaultGuard {
  explicit FaultGuard(AtomicWriteFault fault) { set_atomic_write_fault_for_testing(fault); }
  ~FaultGuard() { set_atomic_write_fault_for_testing(AtomicWriteFault::none); }
};

TEST(AtomicFile, WritesAndReplacesContent) {
  TempDir dir;
  const std::string path = dir.file("out.txt");
  write_file_atomic(path, std::string("first version\n"));
  EXPECT_EQ(read_file(path), "first version\n");
  write_file_atomic(path, std::string("second"));
  EXPECT_EQ(read_file(path), "second");
  const std::string_view pieces[] = {"ab", "", "cde"};
  write_file_atomic(path, pieces);
  EXPECT_EQ(read_file(path), "abcde");
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"out.txt"});
}

TEST(AtomicFile, MissingDirectoryIsAnErrorAndCreatesNothing) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/out.txt");
  try {
    write_file_atomic(path, std::string("x"));
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(AtomicFile, FailureAfterWritingKeepsOldFileAndRemovesTemp) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  write_file_atomic(path, std::string("old content"));
  for (AtomicWriteFault fault : {AtomicWriteFault::after_write, AtomicWriteFault::after_close}) {
    FaultGuard guard(fault);
    try {
      write_file_atomic(path, std::string("new content that must not appear"));
      ADD_FAILURE() << "expected an Error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(".tmp."), std::string::npos) << message;
      EXPECT_NE(message.find("Input/output error"), std::string::npos) << message;
    }
    EXPECT_EQ(read_file(path), "old content");
    EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"ckpt.safetensors"});
  }
  // With the hook reset, writing works again.
  write_file_atomic(path, std::string("fresh"));
  EXPECT_EQ(read_file(path), "fresh");
}

TEST(AtomicFile, SafetensorsWriteFailureKeepsPreviousCheckpoint) {
  TempDir dir;
  const std::string path = dir.file("last.safetensors");
  Rng rng(11);
  const Tensor old_w = testing::random_tensor({8}, rng);
  write_safetensors(path, {{"w", old_w}}, {{"epoch", "1"}});
  {
    FaultGuard guard(AtomicWriteFault::after_write);
    EXPECT_THROW(write_safetensors(path, {{"w", testing::random_tensor({8}, rng)}}, {{"epoch", "2"}}), Error);
  }
  const SafetensorsFile file = read_safetensors(path);
  EXPECT_EQ(file.metadata.at("epoch"), "1");
  ASSERT_NE(file.find("w"), nullptr);
  EXPECT_EQ(file.find("w")->to_vector(), old_w.to_vector());
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"last.safetensors"});
}

TEST(AtomicFile, ReadOnlyDirectoryKeepsOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: directory permissions are not enforced";
  TempDir dir;
  const std::string sub = dir.file("ro");
  std::filesystem::create_directory(sub);
  const std::string path = sub + "/f.txt";
  write_file_atomic(path, std::string("old"));
  ASSERT_EQ(::chmod(sub.c_str(), 0555), 0);
  EXPECT_THROW(write_file_atomic(path, std::string("new")), Error);
  ::chmod(sub.c_str(), 0755);
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(list_dir(sub), std::vector<std::string>{"f.txt"});
}

TEST(AtomicFile, TargetThatIsADirectoryIsAnError) {
  TempDir dir;
  const std::string target = dir.file("taken");
  std::filesystem::create_directory(target);
  EXPECT_THROW(write_file_atomic(target, std::string("x")), Error);
  EXPECT_TRUE(std::filesystem::is_directory(target));
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"taken"});
}

}  // namespace
}  // namespace convnet

namespace convnet {
namespace {

// The pid of a child that has exited and been reaped: no process has it (until the kernel reuses it).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

TEST(AtomicFile, WritingRemovesTemporaryFilesOfDeadWritersOnly) {
  TempDir dir;
  const std::string path = dir.file("last.safetensors");
  const std::string dead = fmt::format("last.safetensors.tmp.{}", dead_pid());
  const std::string live = fmt::format("last.safetensors.tmp.{}", ::getppid());       // another writer at work
  const std::string other_file = fmt::format("best.safetensors.tmp.{}", dead_pid());  // not this file's
  for (const std::string& name : {dead, live, other_file, std::string("last.safetensors.tmp.12x")})
    testing::write_file(dir.file(name), "partial");
  write_file_atomic(path, std::string("new"));
  EXPECT_EQ(read_file(path), "new");
  std::vector<std::string> expected = {"last.safetensors", live, other_file, "last.safetensors.tmp.12x"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(list_dir(dir.path()), expected);
  EXPECT_EQ(remove_stale_temp_files(dir.file("best.safetensors")), 1);
}

}  // namespace
}  // namespace convnet
