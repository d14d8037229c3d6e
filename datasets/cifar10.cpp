#include "datasets/cifar10.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "datasets/cifar_binary.h"
#include "datasets/image_folder.h"
#include "datasets/synthetic.h"

namespace convnet {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPrepareHint = "run tools/prepare_cifar10.sh to fetch CIFAR-10";
}  // namespace

DetectedFormat detect_cifar10_format(const std::string& path, const std::string& format) {
  if (format != "auto" && format != "binary" && format != "folder")
    throw ConfigError(fmt::format("data.format: expected auto, binary or folder, got '{}'", format));
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    throw Error(fmt::format("data.path '{}': no such directory ({})", path, kPrepareHint));
  if (format == "binary") {
    const std::string dir = find_cifar10_binary_dir(path);
    // Nothing found: return `path` so that the reader names the file it expected there.
    return {DataFormat::binary, dir.empty() ? path : dir};
  }
  if (format == "auto") {
    const std::string dir = find_cifar10_binary_dir(path);
    if (!dir.empty()) return {DataFormat::binary, dir};
  }
  const std::string root = find_image_folder_root(path);
  if (!root.empty()) return {DataFormat::folder, root};
  if (format == "folder")
    throw Error(
        fmt::format("data.path '{}' (data.format folder): expected train/<class>/*.jpg and test/<class>/*.jpg "
                    "in it or in its only subfolder ({})",
                    path, kPrepareHint));
  throw Error(
      fmt::format("data.path '{}': found neither CIFAR-10 binary files (data_batch_1..5.bin and test_batch.bin, "
                  "here or in {}/) nor image folders (train/<class>/*.jpg and test/<class>/*.jpg) ({})",
                  path, kCifarBinarySubdir, kPrepareHint));
}

DataSplits load_cifar10(const DataConfig& config, int threads) {
  const auto start = std::chrono::steady_clock::now();
  const DetectedFormat detected = detect_cifar10_format(config.path, config.format);
  DataSplits splits;
  if (detected.format == DataFormat::binary) {
    splits.train = load_cifar10_binary(detected.dir, Split::train);
    splits.test = load_cifar10_binary(detected.dir, Split::test);
  } else {
    splits = load_image_folder(detected.dir, threads);
  }
  splits.train.validate();
  splits.test.validate();
  splits.train = apply_limit(std::move(splits.train), config.train_limit, "data.train_limit");
  splits.test = apply_limit(std::move(splits.test), config.test_limit, "data.test_limit");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("data: CIFAR-10 {} from {}: {} training and {} test images ({}x{}x{}) in {:.2f} s",
               detected.format == DataFormat::binary ? "binary files" : "image folders", detected.dir,
               splits.train.size, splits.test.size, splits.train.height, splits.train.width, splits.train.channels,
               seconds);
  return splits;
}

DataSplits load_data(const DataConfig& config, uint64_t seed, int threads) {
  if (config.dataset == "cifar10") return load_cifar10(config, threads);
  if (config.dataset != "synthetic")
    throw ConfigError(fmt::format("data.dataset: expected cifar10 or synthetic, got '{}'", config.dataset));
  DataSplits splits;
  splits.train = make_synthetic(config.synthetic_train_size, config.synthetic_image_size, 10, hash64(seed, 1));
  splits.test = make_synthetic(config.synthetic_test_size, config.synthetic_image_size, 10, hash64(seed, 2));
  splits.train = apply_limit(std::move(splits.train), config.train_limit, "data.train_limit");
  splits.test = apply_limit(std::move(splits.test), config.test_limit, "data.test_limit");
  return splits;
}

std::vector<int64_t> class_balanced_subset(const std::vector<int32_t>& labels, int64_t limit) {
  const auto n = static_cast<int64_t>(labels.size());
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), int64_t{0});
  if (limit <= 0 || limit >= n) return all;
  // rank[i]: how many earlier examples share example i's label.
  std::vector<int64_t> rank(static_cast<size_t>(n));
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < n; ++i) {
    const auto label = static_cast<size_t>(std::max(labels[static_cast<size_t>(i)], 0));
    if (label >= seen.size()) seen.resize(label + 1, 0);
    rank[static_cast<size_t>(i)] = seen[label]++;
  }
  auto key = [&](int64_t i) { return std::pair(rank[static_cast<size_t>(i)], labels[static_cast<size_t>(i)]); };
  std::stable_sort(all.begin(), all.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  all.resize(static_cast<size_t>(limit));
  std::sort(all.begin(), all.end());
  return all;
}

ImageDataset apply_limit(ImageDataset data, int64_t limit, const std::string& key) {
  if (limit < 0) throw ConfigError(fmt::format("{}: expected 0 (no limit) or a positive count, got {}", key, limit));
  if (limit == 0 || limit >= data.size) return data;
  ImageDataset out = data.subset(class_balanced_subset(data.labels, limit));
  out.source = fmt::format("{} ({} {})", data.source, key, limit);
  return out;
}

}  // namespace convnet
