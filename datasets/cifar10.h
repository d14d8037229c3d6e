// CIFAR-10 from disk, in either of its two on-disk forms, and the one entry point the trainer uses
// to get its data (CIFAR-10 or synthetic) from the `data` config section.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "datasets/image_dataset.h"

namespace convnet {

enum class DataFormat { binary, folder };

struct DetectedFormat {
  DataFormat format;
  std::string dir;  // binary: the folder with the .bin files; folder: the root with train/ and test/
};

// Decides how to read `path` given data.format `format` (auto | binary | folder). auto picks
// binary when data_batch_1.bin or test_batch.bin is in `path` or `path`/cifar-10-batches-bin
// (preferred: exact pixels, fast), else folder when `path` or its only subfolder has train/ and
// test/. Throws convnet::Error "data.path 'X': no such directory (run tools/prepare_cifar10.sh to
// fetch CIFAR-10)" for a missing path, an Error saying what was expected when `path` holds neither
// form (or not the forced one), and ConfigError for an unknown `format`.
DetectedFormat detect_cifar10_format(const std::string& path, const std::string& format);

// Both splits of CIFAR-10 as described by `config` (path, format, train_limit, test_limit);
// image folders are decoded with `threads` threads (0 = all cores).
DataSplits load_cifar10(const DataConfig& config, int threads = 0);

// The training and test sets named by config.dataset: cifar10 (load_cifar10) or synthetic
// (make_synthetic with 10 classes from hash64(seed, 1) and hash64(seed, 2)). The limits apply to
// both. Throws ConfigError for an unknown data set name.
DataSplits load_data(const DataConfig& config, uint64_t seed, int threads = 0);

// The indices of a class-balanced subset of `limit` examples: take the first example of every
// class, then the second of every class, and so on (ties by class), until `limit` are chosen;
// returned in increasing order. Image folders list all of one class before the next, so a plain
// "first N" would hold only one class. limit <= 0 or >= labels.size() selects everything.
std::vector<int64_t> class_balanced_subset(const std::vector<int32_t>& labels, int64_t limit);

// `data` restricted to class_balanced_subset(data.labels, limit) (unchanged when limit is 0 or
// not below data.size). Throws ConfigError for a negative limit, naming `key`.
ImageDataset apply_limit(ImageDataset data, int64_t limit, const std::string& key);

}  // namespace convnet
