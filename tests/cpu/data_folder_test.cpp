// Image-folder trees (JPEG and PNG decoding, ordering, every error), format detection for
// load_cifar10, the train/test limits and the folder -> binary converter.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "datasets/cifar10.h"
#include "datasets/cifar_binary.h"
#include "datasets/convert.h"
#include "datasets/image_codec.h"
#include "datasets/image_folder.h"
#include "tests/common/image_files.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::TempDir;
using testing::write_jpeg;
using testing::write_png;
namespace fs = std::filesystem;

std::vector<uint8_t> random_pixels(int h, int w, int c, Rng& rng) {
  std::vector<uint8_t> p(static_cast<size_t>(h * w * c));
  for (uint8_t& v : p) v = static_cast<uint8_t>(rng.below(256));
  return p;
}

// A smooth image (JPEG reproduces it closely at quality 100).
std::vector<uint8_t> smooth_pixels(int h, int w, Rng& rng) {
  std::vector<uint8_t> p(static_cast<size_t>(h * w * 3));
  const double a = rng.uniform() * 6;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        p[static_cast<size_t>((y * w + x) * 3 + c)] =
            static_cast<uint8_t>(128 + 90 * std::sin(a + 0.2 * x + 0.13 * y * (c + 1)));
  return p;
}

// A PNG tree root/<split>/<class>/<i>.png; returns the pixels of each split in load order
// (classes sorted, then file names sorted).
struct Tree {
  std::map<std::string, std::vector<uint8_t>> pixels;  // by split
  std::map<std::string, std::vector<int32_t>> labels;
};
Tree make_png_tree(const std::string& root, const std::vector<std::string>& classes, int train_per_class,
                   int test_per_class, int side, Rng& rng) {
  Tree tree;
  for (const auto& [split, per_class] :
       {std::pair<std::string, int>{"train", train_per_class}, {"test", test_per_class}}) {
    std::vector<std::string> sorted = classes;
    std::sort(sorted.begin(), sorted.end());
    for (size_t c = 0; c < sorted.size(); ++c) {
      for (int i = 0; i < per_class; ++i) {
        const std::vector<uint8_t> px = random_pixels(side, side, 3, rng);
        char name[16];
        std::snprintf(name, sizeof name, "%04d.png", i);
        write_png(root + "/" + split + "/" + sorted[c] + "/" + name, side, side, px);
        tree.pixels[split].insert(tree.pixels[split].end(), px.begin(), px.end());
        tree.labels[split].push_back(static_cast<int32_t>(c));
      }
    }
  }
  return tree;
}

TEST(ImageCodec, DecodesRgbAndGrayPngExactly) {
  TempDir dir;
  Rng rng(1);
  const std::vector<uint8_t> rgb = random_pixels(5, 7, 3, rng);
  write_png(dir.file("a.png"), 5, 7, rgb);
  const DecodedImage img = decode_image_file(dir.file("a.png"));
  EXPECT_EQ(img.height, 5);
  EXPECT_EQ(img.width, 7);
  EXPECT_EQ(img.rgb, rgb);
  const std::vector<uint8_t> gray = random_pixels(3, 4, 1, rng);
  write_png(dir.file("g.png"), 3, 4, gray, true);
  const DecodedImage g = decode_image_file(dir.file("g.png"));
  ASSERT_EQ(g.rgb.size(), 36u);
  for (size_t i = 0; i < 12; ++i)
    for (size_t c = 0; c < 3; ++c) ASSERT_EQ(g.rgb[i * 3 + c], gray[i]) << i;
}

TEST(ImageCodec, DecodesQuality100JpegClosely) {
  TempDir dir;
  Rng rng(2);
  const std::vector<uint8_t> rgb = smooth_pixels(16, 24, rng);
  write_jpeg(dir.file("a.jpg"), 16, 24, rgb);
  const DecodedImage img = decode_image_file(dir.file("a.jpg"));
  ASSERT_EQ(img.height, 16);
  ASSERT_EQ(img.width, 24);
  ASSERT_EQ(img.rgb.size(), rgb.size());
  int max_diff = 0;
  for (size_t i = 0; i < rgb.size(); ++i) max_diff = std::max(max_diff, std::abs(int(img.rgb[i]) - int(rgb[i])));
  EXPECT_LE(max_diff, 3);
}

TEST(ImageCodec, GrayJpegBecomesRgb) {
  TempDir dir;
  Rng rng(3);
  std::vector<uint8_t> gray(8 * 8);
  for (int i = 0; i < 64; ++i) gray[static_cast<size_t>(i)] = static_cast<uint8_t>(60 + 2 * i);
  write_jpeg(dir.file("g.jpeg"), 8, 8, gray, true);
  const DecodedImage img = decode_image_file(dir.file("g.jpeg"));
  ASSERT_EQ(img.rgb.size(), 192u);
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(img.rgb[i * 3], img.rgb[i * 3 + 1]);
    EXPECT_EQ(img.rgb[i * 3], img.rgb[i * 3 + 2]);
    EXPECT_LE(std::abs(int(img.rgb[i * 3]) - int(gray[i])), 2);
  }
}

TEST(ImageCodec, CorruptJpegIsAnErrorNamingTheFile) {
  TempDir dir;
  Rng rng(4);
  write_jpeg(dir.file("ok.jpg"), 16, 16, smooth_pixels(16, 16, rng));
  std::ifstream in(dir.file("ok.jpg"), std::ios::binary);
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // Truncated in the middle of the entropy-coded data.
  std::ofstream(dir.file("cut.jpg"), std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  std::string msg = error_of([&] { decode_image_file(dir.file("cut.jpg")); });
  EXPECT_NE(msg.find(dir.file("cut.jpg") + ": not a valid JPEG ("), std::string::npos) << msg;
  // Garbage after a JPEG signature.
  std::ofstream(dir.file("junk.jpg"), std::ios::binary) << "\xFF\xD8\xFF" << std::string(100, 'x');
  msg = error_of([&] { decode_image_file(dir.file("junk.jpg")); });
  EXPECT_NE(msg.find(dir.file("junk.jpg") + ": not a valid JPEG ("), std::string::npos) << msg;
  // Not a JPEG at all, but named like one.
  std::ofstream(dir.file("text.jpg")) << "hello, world";
  msg = error_of([&] { decode_image_file(dir.file("text.jpg")); });
  EXPECT_NE(msg.find(dir.file("text.jpg") + ": not a valid JPEG ("), std::string::npos) << msg;
  // A broken PNG.
  std::ofstream(dir.file("bad.png"), std::ios::binary) << "\x89PNG\r\n\x1a\n" << std::string(30, 'z');
  msg = error_of([&] { decode_image_file(dir.file("bad.png")); });
  EXPECT_NE(msg.find(dir.file("bad.png") + ": not a valid PNG ("), std::string::npos) << msg;
}

TEST(ImageFolder, LoadsClassesAndFilesInSortedOrder) {
  TempDir dir;
  Rng rng(5);
  // Created out of order, file names that sort differently as strings and as numbers.
  std::map<std::string, std::vector<uint8_t>> px;
  for (const char* cls_name : {"zebra", "ant", "moth"})
    for (const char* file : {"2.png", "10.png", "1.png"}) {
      const std::string cls = cls_name, name = file;
      px[cls + "/" + name] = random_pixels(4, 6, 3, rng);
      write_png(dir.path() + "/train/" + cls + "/" + name, 4, 6, px[cls + "/" + name]);
    }
  std::ofstream(dir.path() + "/train/ant/notes.txt") << "not an image";
  write_png(dir.path() + "/train/ant/.hidden.png", 2, 2, random_pixels(2, 2, 3, rng));
  fs::create_directories(dir.path() + "/train/.cache");
  const ImageDataset d = load_image_folder_split(dir.path() + "/train");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"ant", "moth", "zebra"}));
  ASSERT_EQ(d.size, 9);
  EXPECT_EQ(d.height, 4);
  EXPECT_EQ(d.width, 6);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{0, 0, 0, 1, 1, 1, 2, 2, 2}));
  const char* order[] = {"1.png", "10.png", "2.png"};
  int i = 0;
  for (const char* cls : {"ant", "moth", "zebra"})
    for (const char* name : order) {
      const std::vector<uint8_t>& expected = px[std::string(cls) + "/" + name];
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), d.image(i))) << cls << "/" << name;
      ++i;
    }
}

TEST(ImageFolder, ResultDoesNotDependOnThreadCount) {
  TempDir dir;
  Rng rng(6);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 9; ++i) {
      const std::string name = dir.path() + "/train/c" + std::to_string(c) + "/" + std::to_string(i);
      if (i % 2)
        write_jpeg(name + ".jpg", 8, 8, smooth_pixels(8, 8, rng));
      else
        write_png(name + ".png", 8, 8, random_pixels(8, 8, 3, rng));
    }
  const ImageDataset one = load_image_folder_split(dir.path() + "/train", {}, 1);
  const ImageDataset three = load_image_folder_split(dir.path() + "/train", {}, 3);
  EXPECT_EQ(one.size, 27);
  EXPECT_EQ(one.pixels, three.pixels);
  EXPECT_EQ(one.labels, three.labels);
}

TEST(ImageFolder, MismatchedSizeNamesTheFile) {
  TempDir dir;
  Rng rng(7);
  for (int i = 0; i < 6; ++i)
    write_png(dir.path() + "/train/a/" + std::to_string(i) + ".png", 8, 8, random_pixels(8, 8, 3, rng));
  write_png(dir.path() + "/train/b/0.png", 8, 8, random_pixels(8, 8, 3, rng));
  write_png(dir.path() + "/train/b/1.png", 8, 7, random_pixels(8, 7, 3, rng));
  for (int threads : {1, 4}) {
    const std::string msg = error_of([&] { load_image_folder_split(dir.path() + "/train", {}, threads); });
    EXPECT_NE(msg.find(dir.path() + "/train/b/1.png: 7x8 image, expected 8x8"), std::string::npos) << msg;
  }
}

TEST(ImageFolder, CorruptImageInTreeIsReportedByName) {
  TempDir dir;
  Rng rng(8);
  for (int i = 0; i < 5; ++i)
    write_png(dir.path() + "/train/cat/000" + std::to_string(i) + ".png", 4, 4, random_pixels(4, 4, 3, rng));
  std::ofstream(dir.path() + "/train/cat/0001.jpg") << "definitely not a jpeg";
  const std::string msg = error_of([&] { load_image_folder_split(dir.path() + "/train", {}, 2); });
  EXPECT_NE(msg.find(dir.path() + "/train/cat/0001.jpg: not a valid JPEG ("), std::string::npos) << msg;
}

TEST(ImageFolder, TestSplitMustHaveTheTrainingClasses) {
  TempDir dir;
  Rng rng(9);
  make_png_tree(dir.path(), {"cat", "dog", "frog"}, 1, 1, 4, rng);
  fs::remove_all(dir.path() + "/test/dog");
  write_png(dir.path() + "/test/dogs/0.png", 4, 4, random_pixels(4, 4, 3, rng));
  const std::string msg = error_of([&] { load_image_folder(dir.path()); });
  EXPECT_NE(msg.find(dir.path() + "/test: class folders differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing 'dog'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected 'dogs'"), std::string::npos) << msg;
}

TEST(ImageFolder, EmptyClassAndMissingSplitAreErrors) {
  TempDir dir;
  Rng rng(10);
  write_png(dir.path() + "/train/a/0.png", 4, 4, random_pixels(4, 4, 3, rng));
  fs::create_directories(dir.path() + "/train/b");
  std::string msg = error_of([&] { load_image_folder_split(dir.path() + "/train"); });
  EXPECT_NE(msg.find(dir.path() + "/train/b: no .jpg, .jpeg or .png images"), std::string::npos) << msg;
  msg = error_of([&] { load_image_folder_split(dir.path() + "/test"); });
  EXPECT_NE(msg.find(dir.path() + "/test: no such directory"), std::string::npos) << msg;
}

TEST(ImageFolder, FindsRootOneLevelDown) {
  TempDir dir;
  Rng rng(11);
  make_png_tree(dir.path() + "/cifar10", {"a", "b"}, 1, 1, 4, rng);
  EXPECT_EQ(find_image_folder_root(dir.path()), dir.path() + "/cifar10");
  EXPECT_EQ(find_image_folder_root(dir.path() + "/cifar10"), dir.path() + "/cifar10");
  EXPECT_EQ(find_image_folder_root(dir.path() + "/cifar10/train"), "");
  EXPECT_EQ(find_image_folder_root(dir.path() + "/missing"), "");
}

TEST(Cifar10Load, DetectsFolderAndBinaryFormats) {
  TempDir dir;
  Rng rng(12);
  const std::string folder = dir.path() + "/jpeg";
  make_png_tree(folder + "/top", {"b", "a"}, 2, 1, 32, rng);
  DetectedFormat f = detect_cifar10_format(folder, "auto");
  EXPECT_EQ(f.format, DataFormat::folder);
  EXPECT_EQ(f.dir, folder + "/top");

  const std::string bin = dir.path() + "/bin";
  convert_to_cifar_binary(folder, bin + "/cifar-10-batches-bin", 1);
  f = detect_cifar10_format(bin, "auto");
  EXPECT_EQ(f.format, DataFormat::binary);
  EXPECT_EQ(f.dir, bin + "/cifar-10-batches-bin");

  // Both forms in one folder: auto prefers binary, format: folder forces the tree.
  convert_to_cifar_binary(folder, folder, 1);
  EXPECT_EQ(detect_cifar10_format(folder, "auto").format, DataFormat::binary);
  EXPECT_EQ(detect_cifar10_format(folder, "folder").format, DataFormat::folder);
  EXPECT_EQ(detect_cifar10_format(folder, "binary").dir, folder);
  EXPECT_THROW(detect_cifar10_format(folder, "tfrecord"), ConfigError);
}

TEST(Cifar10Load, ForcedFormatThatIsAbsentIsAnError) {
  TempDir dir;
  Rng rng(13);
  make_png_tree(dir.path(), {"a", "b"}, 1, 1, 32, rng);
  DataConfig config;
  config.path = dir.path();
  config.format = "binary";
  std::string msg = error_of([&] { load_cifar10(config); });
  EXPECT_NE(msg.find(dir.file("data_batch_1.bin") + "': No such file or directory"), std::string::npos) << msg;
  config.format = "auto";
  EXPECT_EQ(load_cifar10(config).train.size, 2);

  TempDir bin;
  convert_to_cifar_binary(dir.path(), bin.path(), 1);
  config.path = bin.path();
  config.format = "folder";
  msg = error_of([&] { load_cifar10(config); });
  EXPECT_NE(msg.find("(data.format folder): expected train/<class>/*.jpg"), std::string::npos) << msg;
}

TEST(Cifar10Load, MissingOrUnrecognisedPathSaysWhatToDo) {
  TempDir dir;
  DataConfig config;
  config.path = dir.path() + "/nowhere";
  std::string msg = error_of([&] { load_cifar10(config); });
  EXPECT_NE(
      msg.find("data.path '" + config.path + "': no such directory (run tools/prepare_cifar10.sh to fetch CIFAR-10)"),
      std::string::npos)
      << msg;
  config.path = dir.path();
  std::ofstream(dir.file("readme.txt")) << "nothing here";
  msg = error_of([&] { load_cifar10(config); });
  EXPECT_NE(msg.find("found neither CIFAR-10 binary files"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train/<class>/*.jpg"), std::string::npos) << msg;
}

TEST(Cifar10Load, LimitsTakeAClassBalancedSubset) {
  EXPECT_EQ(class_balanced_subset({0, 0, 0, 1, 1, 1, 2, 2, 2}, 4), (std::vector<int64_t>{0, 1, 3, 6}));
  EXPECT_EQ(class_balanced_subset({2, 2, 0, 1, 0}, 3), (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(class_balanced_subset({1, 0}, 0), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(class_balanced_subset({1, 0}, 5), (std::vector<int64_t>{0, 1}));

  TempDir dir;
  Rng rng(14);
  const Tree tree = make_png_tree(dir.path(), {"a", "b", "c"}, 4, 2, 32, rng);
  DataConfig config;
  config.path = dir.path();
  config.train_limit = 7;
  config.test_limit = 3;
  const DataSplits s = load_cifar10(config, 2);
  EXPECT_EQ(s.train.labels, (std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(s.test.labels, (std::vector<int32_t>{0, 1, 2}));
  // The first test image of class b is image 2 of the full test split.
  const std::vector<uint8_t>& all = tree.pixels.at("test");
  EXPECT_TRUE(std::equal(all.begin() + 2 * 3072, all.begin() + 3 * 3072, s.test.image(1)));
  config.train_limit = -1;
  EXPECT_THROW(load_cifar10(config), ConfigError);
}

TEST(Converter, FolderToBinaryRoundTripsExactly) {
  TempDir src, out;
  Rng rng(15);
  const Tree tree = make_png_tree(src.path() + "/cifar", {"cat", "airplane", "dog"}, 3, 2, 32, rng);
  convert_to_cifar_binary(src.path(), out.path() + "/bin", 2);
  // 9 training images in 5 files of whole records: 2, 2, 2, 2, 1.
  const std::vector<uintmax_t> sizes = {2, 2, 2, 2, 1};
  for (int f = 0; f < 5; ++f)
    EXPECT_EQ(fs::file_size(out.path() + "/bin/data_batch_" + std::to_string(f + 1) + ".bin"),
              sizes[static_cast<size_t>(f)] * 3073);
  for (Split split : {Split::train, Split::test}) {
    const ImageDataset d = load_cifar10_binary(out.path() + "/bin", split);
    EXPECT_EQ(d.class_names, (std::vector<std::string>{"airplane", "cat", "dog"}));
    EXPECT_EQ(d.labels, tree.labels.at(split_name(split)));
    EXPECT_EQ(d.pixels, tree.pixels.at(split_name(split)));  // PNG is lossless: the very same bytes
  }
  // Not 32x32: the binary format cannot hold it.
  TempDir small;
  make_png_tree(small.path(), {"a", "b"}, 1, 1, 8, rng);
  const std::string msg = error_of([&] { convert_to_cifar_binary(small.path(), out.path() + "/small", 1); });
  EXPECT_NE(msg.find("8x8x3, the format needs 32x32x3"), std::string::npos) << msg;
}

}  // namespace
}  // namespace convnet
