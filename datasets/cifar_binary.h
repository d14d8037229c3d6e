// The official CIFAR-10 binary format (cifar-10-binary.tar.gz): files of 3073-byte records, each
// one label byte (0-9) followed by a 32x32 image as planar R, G, B planes of 1024 bytes, rows top to
// bottom. Training data is data_batch_1.bin .. data_batch_5.bin, test data test_batch.bin, and
// batches.meta.txt lists the class names one per line.
#pragma once

#include <string>
#include <vector>

#include "datasets/image_dataset.h"

namespace convnet {

constexpr int kCifarImageSide = 32;
constexpr int kCifarChannels = 3;
constexpr int kCifarNumClasses = 10;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageSide * kCifarImageSide * kCifarChannels;  // 3073
constexpr const char* kCifarBinarySubdir = "cifar-10-batches-bin";  // what the official tarball unpacks to

// Reads every record of one file into a 32x32x3 HWC data set with the 10 CIFAR class names.
// Throws convnet::Error naming `path` when it is missing or unreadable, empty, not a whole number
// of records, or holds a label outside 0-9 ("PATH: record 17: label 12 outside 0-9").
ImageDataset read_cifar10_binary_file(const std::string& path);

// The folder holding the batch files: `dir` itself when it has data_batch_1.bin or test_batch.bin,
// else `dir`/cifar-10-batches-bin when that has one of them; "" when neither does.
std::string find_cifar10_binary_dir(const std::string& dir);

// The files a split is read from, in order: data_batch_1..5.bin for train, test_batch.bin for test.
std::vector<std::string> cifar10_binary_files(Split split);

// Loads a split from `dir` (or its cifar-10-batches-bin subfolder), concatenating the files in
// order. Class names come from batches.meta.txt when present, else cifar10_class_names().
// Throws convnet::Error naming the first missing or bad file, or a label beyond the meta names.
ImageDataset load_cifar10_binary(const std::string& dir, Split split);

// Writes all of `data` to one file of CIFAR-10 records. Throws convnet::Error when the images are
// not 32x32x3, a label is outside 0-9, or the file cannot be written.
void write_cifar10_binary(const ImageDataset& data, const std::string& path);

// batches.meta.txt: one class name per line; blank lines and surrounding spaces are ignored.
// read_cifar10_meta throws convnet::Error naming `path` unless it holds 1 to 10 names (fewer than
// 10 when written by convert_to_cifar_binary for a tree with fewer classes).
std::vector<std::string> read_cifar10_meta(const std::string& path);
void write_cifar10_meta(const std::vector<std::string>& class_names, const std::string& path);

}  // namespace convnet
