#include "datasets/image_folder.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/base/error.h"
#include "datasets/image_codec.h"

namespace convnet {

namespace fs = std::filesystem;

namespace {

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

bool has_splits(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir / "train", ec) && fs::is_directory(dir / "test", ec);
}

std::vector<std::string> list_images(const fs::path& class_dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(class_dir)) {
    if (is_hidden(e.path()) || !is_image_name(e.path())) continue;
    std::error_code ec;
    if (e.is_regular_file(ec)) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string join_quoted(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
  return out;
}

}  // namespace

std::string find_image_folder_root(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return "";
  if (has_splits(path)) return path;
  std::string found;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    if (is_hidden(e.path()) || !e.is_directory(ec) || !has_splits(e.path())) continue;
    if (!found.empty()) return "";  // two candidates: ambiguous
    found = e.path().string();
  }
  return found;
}

std::vector<std::string> list_class_folders(const std::string& split_dir) {
  std::error_code ec;
  if (!fs::is_directory(split_dir, ec))
    throw Error(fmt::format("{}: no such directory (expected one folder of images per class)", split_dir));
  std::vector<std::string> classes;
  for (const fs::directory_entry& e : fs::directory_iterator(split_dir)) {
    if (!is_hidden(e.path()) && e.is_directory(ec)) classes.push_back(e.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  return classes;
}

ImageDataset load_image_folder_split(const std::string& split_dir, const std::vector<std::string>& expected_classes,
                                     int threads) {
  const std::vector<std::string> classes = list_class_folders(split_dir);
  if (classes.empty())
    throw Error(fmt::format("{}: no class folders (expected {}/<class>/*.jpg or *.png)", split_dir, split_dir));
  if (!expected_classes.empty() && classes != expected_classes) {
    std::vector<std::string> missing, extra;
    for (const std::string& c : expected_classes)
      if (!std::binary_search(classes.begin(), classes.end(), c)) missing.push_back(c);
    for (const std::string& c : classes)
      if (std::find(expected_classes.begin(), expected_classes.end(), c) == expected_classes.end()) extra.push_back(c);
    std::string what;
    if (!missing.empty()) what += "missing " + join_quoted(missing);
    if (!extra.empty()) what += (what.empty() ? "" : "; ") + std::string("unexpected ") + join_quoted(extra);
    throw Error(fmt::format("{}: class folders differ from the training split's ({})", split_dir, what));
  }

  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path class_dir = fs::path(split_dir) / classes[c];
    const std::vector<std::string> names = list_images(class_dir);
    if (names.empty()) throw Error(fmt::format("{}: no .jpg, .jpeg or .png images", class_dir.string()));
    for (const std::string& n : names) {
      paths.push_back((class_dir / n).string());
      labels.push_back(static_cast<int32_t>(c));
    }
  }

  // The first image fixes the size; the rest are decoded in parallel straight into place.
  DecodedImage first = decode_image_file(paths[0]);
  ImageDataset data;
  data.size = static_cast<int64_t>(paths.size());
  data.height = first.height;
  data.width = first.width;
  data.channels = 3;
  data.class_names = classes;
  data.labels = std::move(labels);
  data.source = split_dir;
  const auto bytes = static_cast<size_t>(data.image_bytes());
  data.pixels.resize(bytes * paths.size());
  std::memcpy(data.pixels.data(), first.rgb.data(), bytes);

  std::atomic<size_t> next{1};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  size_t error_index = paths.size();
  std::exception_ptr error;
  auto work = [&] {
    // Indices are claimed in increasing order and a failure only stops new claims, so every index
    // below a failing one is still decoded: the error reported is always the lowest-numbered one.
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const size_t i = next.fetch_add(1);
      if (i >= paths.size()) return;
      try {
        const DecodedImage img = decode_image_file(paths[i]);
        if (img.height != data.height || img.width != data.width)
          throw Error(fmt::format("{}: {}x{} image, expected {}x{} like {}", paths[i], img.width, img.height,
                                  data.width, data.height, paths[0]));
        std::memcpy(data.pixels.data() + i * bytes, img.rgb.data(), bytes);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (i < error_index) {
          error_index = i;
          error = std::current_exception();
        }
        failed = true;
      }
    }
  };
  unsigned n_threads = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
  n_threads = static_cast<unsigned>(std::min<size_t>(n_threads, paths.size()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n_threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return data;
}

DataSplits load_image_folder(const std::string& root, int threads) {
  const std::string train_dir = (fs::path(root) / "train").string();
  const std::string test_dir = (fs::path(root) / "test").string();
  DataSplits splits;
  splits.train = load_image_folder_split(train_dir, {}, threads);
  splits.test = load_image_folder_split(test_dir, splits.train.class_names, threads);
  if (splits.test.height != splits.train.height || splits.test.width != splits.train.width)
    throw Error(fmt::format("{}: images are {}x{}, but the training images in {} are {}x{}", test_dir,
                            splits.test.width, splits.test.height, train_dir, splits.train.width, splits.train.height));
  return splits;
}

}  // namespace convnet
