#include "datasets/convert.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <numeric>

#include "core/base/error.h"
#include "datasets/cifar_binary.h"
#include "datasets/image_folder.h"

namespace convnet {

namespace fs = std::filesystem;

void convert_to_cifar_binary(const std::string& image_root, const std::string& out_dir, int threads) {
  const std::string root = find_image_folder_root(image_root);
  if (root.empty())
    throw Error(
        fmt::format("{}: expected an image folder tree (train/<class>/*.jpg and test/<class>/*.jpg, here or "
                    "in its only subfolder)",
                    image_root));
  const DataSplits splits = load_image_folder(root, threads);
  if (splits.train.num_classes() > kCifarNumClasses)
    throw Error(fmt::format("{}: {} classes, but the CIFAR-10 binary format holds labels 0-9 only", root,
                            splits.train.num_classes()));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", out_dir, ec.message()));

  constexpr int64_t kFiles = 5;
  const int64_t n = splits.train.size;
  int64_t begin = 0;
  for (int64_t f = 0; f < kFiles; ++f) {
    const int64_t count = n / kFiles + (f < n % kFiles ? 1 : 0);
    std::vector<int64_t> indices(static_cast<size_t>(count));
    std::iota(indices.begin(), indices.end(), begin);
    begin += count;
    ImageDataset part = splits.train.subset(indices);
    write_cifar10_binary(part, (fs::path(out_dir) / fmt::format("data_batch_{}.bin", f + 1)).string());
  }
  write_cifar10_binary(splits.test, (fs::path(out_dir) / "test_batch.bin").string());
  write_cifar10_meta(splits.train.class_names, (fs::path(out_dir) / "batches.meta.txt").string());
  spdlog::info("converted {} ({} training, {} test images) to CIFAR-10 binary files in {}", root, n, splits.test.size,
               out_dir);
}

}  // namespace convnet
