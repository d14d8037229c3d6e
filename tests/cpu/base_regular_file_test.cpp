// read_regular_file: the contents of a regular file up to a limit; a FIFO (which would block),
// a device (which never ends) or a directory is refused at once with a message naming it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "core/base/error.h"
#include "core/base/regular_file.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::TempDir;
using testing::write_file;

TEST(RegularFile, ReadsTheWholeFileUpToTheLimit) {
  TempDir dir;
  write_file(dir.file("a.txt"), "hello");
  EXPECT_EQ(read_regular_file_text(dir.file("a.txt"), 5, "test file"), "hello");
  EXPECT_EQ(read_regular_file(dir.file("a.txt"), 100, "test file").size(), 5u);
  write_file(dir.file("empty"), "");
  EXPECT_EQ(read_regular_file_text(dir.file("empty"), 0, "test file"), "");
}

TEST(RegularFile, OneByteOverTheLimitIsAnErrorStatingIt) {
  TempDir dir;
  write_file(dir.file("big"), std::string((1 << 20) + 1, 'x'));
  const std::string message = error_of([&] { read_regular_file_text(dir.file("big"), 1 << 20, "config file"); });
  EXPECT_NE(message.find("config file '" + dir.file("big") + "': 1048577 bytes, more than the limit of 1 MiB"),
            std::string::npos)
      << message;
}

TEST(RegularFile, ProcFilesThatReportSizeZeroAreReadToTheEnd) {
  EXPECT_FALSE(read_regular_file_text("/proc/self/status", 1 << 20, "test file").empty());
  EXPECT_NE(error_of([] { read_regular_file_text("/proc/self/status", 8, "test file"); }).find("more than the limit"),
            std::string::npos);
}

TEST(RegularFile, FifoDeviceAndDirectoryAreRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { read_regular_file(dir.file("fifo"), 100, "data file"); })
                .find("is a FIFO (named pipe), "
                      "expected a regular file"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { read_regular_file("/dev/zero", 100, "data file"); }).find("'/dev/zero': is a character device"),
      std::string::npos);
  EXPECT_NE(error_of([&] { read_regular_file(dir.path(), 100, "data file"); }).find("is a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_regular_file(dir.file("missing"), 100, "data file"); }).find("cannot open data file"),
            std::string::npos);
}

TEST(RegularFile, ByteCountsReadAsPeopleWriteThem) {
  EXPECT_EQ(byte_count_text(uint64_t{1} << 20), "1 MiB");
  EXPECT_EQ(byte_count_text(uint64_t{4} << 30), "4 GiB");
  EXPECT_EQ(byte_count_text(1000), "1000 bytes");
}

}  // namespace
}  // namespace convnet
