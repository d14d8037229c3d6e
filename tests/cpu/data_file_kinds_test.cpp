// The data readers refuse what is not a regular file (a FIFO would block the loader forever, a
// device never ends) with a message naming the path, instead of hanging.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/base/error.h"
#include "datasets/cifar_binary.h"
#include "datasets/image_codec.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::TempDir;

TEST(DataFileKinds, CifarBatchMetaAndImageFilesMustBeRegular) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("data_batch_1.bin").c_str(), 0600), 0);
  EXPECT_NE(error_of([&] {
              read_cifar10_binary_file(dir.file("data_batch_1.bin"));
            }).find("CIFAR-10 batch file '" + dir.file("data_batch_1.bin") + "': is a FIFO (named pipe)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_cifar10_meta(dir.file("data_batch_1.bin")); }).find("class-name file"),
            std::string::npos);
  EXPECT_NE(error_of([] { read_cifar10_binary_file("/dev/zero"); }).find("is a character device"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_image_file(dir.path()); }).find("image file '" + dir.path() + "': is a directory"),
            std::string::npos);
}

}  // namespace
}  // namespace convnet
