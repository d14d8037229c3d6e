// CIFAR-10 binary records: reading (planar -> HWC), every malformed-file error, writing, and the
// split loader (file order, cifar-10-batches-bin subfolder, batches.meta.txt).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "datasets/cifar_binary.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::read_file_bytes;
using testing::TempDir;
using testing::write_file;
namespace fs = std::filesystem;

// `n` random records with labels (first_label + r) % 10; returns the raw file bytes.
std::vector<uint8_t> random_records(int n, Rng& rng, int first_label = 0) {
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * 3073);
  for (int r = 0; r < n; ++r) {
    bytes[static_cast<size_t>(r) * 3073] = static_cast<uint8_t>((first_label + r) % 10);
    for (int i = 1; i < 3073; ++i)
      bytes[static_cast<size_t>(r) * 3073 + static_cast<size_t>(i)] = static_cast<uint8_t>(rng.below(256));
  }
  return bytes;
}

TEST(CifarBinary, ReadsPlanarRecordsIntoHwc) {
  TempDir dir;
  Rng rng(1);
  const std::vector<uint8_t> bytes = random_records(3, rng, 7);
  write_file(dir.file("b.bin"), bytes);
  const ImageDataset d = read_cifar10_binary_file(dir.file("b.bin"));
  ASSERT_EQ(d.size, 3);
  EXPECT_EQ(d.height, 32);
  EXPECT_EQ(d.width, 32);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{7, 8, 9}));
  EXPECT_EQ(d.class_names, cifar10_class_names());
  ASSERT_EQ(d.pixels.size(), 3u * 3072u);
  for (int r = 0; r < 3; ++r)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        for (int c = 0; c < 3; ++c) {
          const uint8_t expected = bytes[static_cast<size_t>(r * 3073 + 1 + c * 1024 + y * 32 + x)];
          ASSERT_EQ(d.image(r)[(y * 32 + x) * 3 + c], expected)
              << "record " << r << " y " << y << " x " << x << " c " << c;
        }
}

TEST(CifarBinary, HandCheckedPixelPositions) {
  TempDir dir;
  std::vector<uint8_t> rec(3073, 0);
  rec[0] = 4;
  rec[1 + 0 * 1024 + 0] = 11;             // R at (0, 0)
  rec[1 + 1 * 1024 + 1] = 22;             // G at (0, 1)
  rec[1 + 2 * 1024 + 32 * 2 + 3] = 33;    // B at (2, 3)
  rec[1 + 0 * 1024 + 32 * 31 + 31] = 44;  // R at (31, 31)
  write_file(dir.file("one.bin"), rec);
  const ImageDataset d = read_cifar10_binary_file(dir.file("one.bin"));
  EXPECT_EQ(d.labels[0], 4);
  EXPECT_EQ(d.pixels[0], 11);
  EXPECT_EQ(d.pixels[1 * 3 + 1], 22);
  EXPECT_EQ(d.pixels[(2 * 32 + 3) * 3 + 2], 33);
  EXPECT_EQ(d.pixels[(31 * 32 + 31) * 3 + 0], 44);
  int nonzero = 0;
  for (uint8_t v : d.pixels) nonzero += v != 0;
  EXPECT_EQ(nonzero, 4);
}

TEST(CifarBinary, AcceptsAnyWholeNumberOfRecords) {
  TempDir dir;
  Rng rng(2);
  for (int n : {1, 2, 7}) {
    write_file(dir.file("n.bin"), random_records(n, rng));
    EXPECT_EQ(read_cifar10_binary_file(dir.file("n.bin")).size, n);
  }
}

TEST(CifarBinary, PartialRecordIsAnErrorNamingTheFile) {
  TempDir dir;
  Rng rng(3);
  std::vector<uint8_t> bytes = random_records(3, rng);
  bytes.push_back(5);
  write_file(dir.file("data_batch_3.bin"), bytes);
  const std::string msg = error_of([&] { read_cifar10_binary_file(dir.file("data_batch_3.bin")); });
  EXPECT_NE(msg.find(dir.file("data_batch_3.bin") + ": size 9220 bytes is not a whole number of 3073-byte records "
                                                    "(3 records + 1 byte)"),
            std::string::npos)
      << msg;
}

TEST(CifarBinary, TruncatedFileIsAnError) {
  TempDir dir;
  Rng rng(4);
  std::vector<uint8_t> bytes = random_records(2, rng);
  bytes.resize(3073 + 3000);
  write_file(dir.file("t.bin"), bytes);
  const std::string msg = error_of([&] { read_cifar10_binary_file(dir.file("t.bin")); });
  EXPECT_NE(msg.find("(1 records + 3000 bytes)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t.bin"), std::string::npos) << msg;
}

TEST(CifarBinary, EmptyFileIsAnError) {
  TempDir dir;
  write_file(dir.file("empty.bin"), "");
  const std::string msg = error_of([&] { read_cifar10_binary_file(dir.file("empty.bin")); });
  EXPECT_NE(msg.find(dir.file("empty.bin") + ": empty file"), std::string::npos) << msg;
}

TEST(CifarBinary, LabelOutsideRangeIsAnError) {
  TempDir dir;
  Rng rng(5);
  std::vector<uint8_t> bytes = random_records(20, rng);
  bytes[17 * 3073] = 12;
  write_file(dir.file("data_batch_1.bin"), bytes);
  const std::string msg = error_of([&] { read_cifar10_binary_file(dir.file("data_batch_1.bin")); });
  EXPECT_NE(msg.find("data_batch_1.bin: record 17: label 12 outside 0-9"), std::string::npos) << msg;
}

TEST(CifarBinary, MissingFileIsAnError) {
  TempDir dir;
  const std::string msg = error_of([&] { read_cifar10_binary_file(dir.file("nope.bin")); });
  EXPECT_NE(msg.find(dir.file("nope.bin") + "': No such file or directory"), std::string::npos) << msg;
}

// Writes a fake CIFAR-10 binary release into `dir` with `counts` train records per file and
// `test_count` test records; returns the expected labels of the train split in order.
std::vector<int32_t> write_release(const std::string& dir, const std::vector<int>& counts, int test_count, Rng& rng) {
  fs::create_directories(dir);
  std::vector<int32_t> labels;
  for (size_t f = 0; f < counts.size(); ++f) {
    const int first = static_cast<int>(f) * 3;
    write_file(dir + "/data_batch_" + std::to_string(f + 1) + ".bin", random_records(counts[f], rng, first));
    for (int r = 0; r < counts[f]; ++r) labels.push_back((first + r) % 10);
  }
  write_file(dir + "/test_batch.bin", random_records(test_count, rng, 5));
  return labels;
}

TEST(CifarBinary, LoadsSplitsInFileOrderFromTheTarballSubfolder) {
  TempDir dir;
  Rng rng(6);
  const std::string sub = dir.path() + "/cifar-10-batches-bin";
  const std::vector<int32_t> labels = write_release(sub, {2, 3, 1, 4, 2}, 3, rng);
  EXPECT_EQ(find_cifar10_binary_dir(dir.path()), sub);
  const ImageDataset train = load_cifar10_binary(dir.path(), Split::train);
  EXPECT_EQ(train.size, 12);
  EXPECT_EQ(train.labels, labels);
  // The 4th record of the whole split is the 2nd record of data_batch_2.bin.
  const std::vector<uint8_t> second = read_file_bytes(sub + "/data_batch_2.bin");
  EXPECT_EQ(train.image(3)[(5 * 32 + 6) * 3 + 1], second[3073 + 1 + 1024 + 5 * 32 + 6]);
  const ImageDataset test = load_cifar10_binary(dir.path(), Split::test);
  EXPECT_EQ(test.size, 3);
  EXPECT_EQ(test.labels, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(test.class_names, cifar10_class_names());
}

TEST(CifarBinary, MissingBatchFileIsNamed) {
  TempDir dir;
  Rng rng(7);
  write_release(dir.path(), {1, 1, 1, 1, 1}, 1, rng);
  fs::remove(dir.file("data_batch_3.bin"));
  const std::string msg = error_of([&] { load_cifar10_binary(dir.path(), Split::train); });
  EXPECT_NE(msg.find(dir.file("data_batch_3.bin") + "': No such file or directory"), std::string::npos) << msg;
  EXPECT_EQ(load_cifar10_binary(dir.path(), Split::test).size, 1);  // the test split is complete
}

TEST(CifarBinary, ReadsClassNamesFromMeta) {
  TempDir dir;
  Rng rng(8);
  write_release(dir.path(), {1, 1, 1, 1, 1}, 2, rng);
  write_file(dir.file("batches.meta.txt"), "a0\nb1\n c2 \nd3\ne4\nf5\ng6\nh7\ni8\nj9\n\n\n");
  const ImageDataset test = load_cifar10_binary(dir.path(), Split::test);
  ASSERT_EQ(test.class_names.size(), 10u);
  EXPECT_EQ(test.class_names[2], "c2");
  EXPECT_EQ(test.class_names[9], "j9");
  // Fewer names than labels used: test labels are 5 and 6.
  write_file(dir.file("batches.meta.txt"), "a\nb\nc\n");
  std::string msg = error_of([&] { load_cifar10_binary(dir.path(), Split::test); });
  EXPECT_NE(msg.find("image 0 has label 5, but " + dir.file("batches.meta.txt") + " names only 3 classes"),
            std::string::npos)
      << msg;
  write_file(dir.file("batches.meta.txt"), "\n");
  msg = error_of([&] { load_cifar10_binary(dir.path(), Split::test); });
  EXPECT_NE(msg.find("batches.meta.txt: 0 class names, expected 1 to 10"), std::string::npos) << msg;
}

TEST(CifarBinary, WriteProducesPlanarRecordsThatReadBack) {
  TempDir dir;
  Rng rng(9);
  ImageDataset d;
  d.size = 4;
  d.height = d.width = 32;
  d.channels = 3;
  d.class_names = cifar10_class_names();
  d.labels = {3, 0, 9, 5};
  d.pixels.resize(4 * 3072);
  for (uint8_t& p : d.pixels) p = static_cast<uint8_t>(rng.below(256));
  write_cifar10_binary(d, dir.file("out.bin"));
  const std::vector<uint8_t> bytes = read_file_bytes(dir.file("out.bin"));
  ASSERT_EQ(bytes.size(), 4u * 3073u);
  EXPECT_EQ(bytes[2 * 3073], 9);
  // Image 2, pixel (7, 30), green, sits in the second plane.
  EXPECT_EQ(bytes[2 * 3073 + 1 + 1024 + 7 * 32 + 30], d.image(2)[(7 * 32 + 30) * 3 + 1]);
  const ImageDataset back = read_cifar10_binary_file(dir.file("out.bin"));
  EXPECT_EQ(back.pixels, d.pixels);
  EXPECT_EQ(back.labels, d.labels);
}

TEST(CifarBinary, WriteRejectsWrongShapeAndLabels) {
  TempDir dir;
  ImageDataset d;
  d.size = 1;
  d.height = d.width = 16;
  d.channels = 3;
  d.class_names = cifar10_class_names();
  d.labels = {1};
  d.pixels.assign(16 * 16 * 3, 7);
  EXPECT_NE(error_of([&] { write_cifar10_binary(d, dir.file("x.bin")); }).find("16x16x3"), std::string::npos);
  d.height = d.width = 32;
  d.pixels.assign(3072, 7);
  d.labels = {10};
  EXPECT_NE(error_of([&] { write_cifar10_binary(d, dir.file("x.bin")); }).find("label 10"), std::string::npos);
}

TEST(ImageDatasetTest, FingerprintTracksPixelsAndLabels) {
  Rng rng(10);
  ImageDataset d;
  d.size = 3;
  d.height = 2;
  d.width = 2;
  d.channels = 3;
  d.class_names = {"a", "b"};
  d.labels = {0, 1, 1};
  d.pixels.resize(36);
  for (uint8_t& p : d.pixels) p = static_cast<uint8_t>(rng.below(256));
  const std::string fp = d.fingerprint();
  EXPECT_EQ(fp.rfind("N=3 H=2 W=2 C=3 classes=2 fnv1a64=", 0), 0u) << fp;
  EXPECT_EQ(fp.size(), std::string("N=3 H=2 W=2 C=3 classes=2 fnv1a64=").size() + 16);
  ImageDataset copy = d;
  EXPECT_EQ(copy.fingerprint(), fp);
  copy.pixels[20] ^= 1;
  EXPECT_NE(copy.fingerprint(), fp);
  copy = d;
  copy.labels[2] = 0;
  EXPECT_NE(copy.fingerprint(), fp);
  // FNV-1a 64 reference values (from the published test vectors).
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ull);
}

}  // namespace
}  // namespace convnet
