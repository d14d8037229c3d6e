#include "datasets/cifar_binary.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/base/error.h"
#include "core/base/regular_file.h"

namespace convnet {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kPlane = kCifarImageSide * kCifarImageSide;
// Read limits, far above the real sizes (30 MB per batch file, a hundred bytes of names).
constexpr uint64_t kMaxCifarBatchFileBytes = uint64_t{4} << 30;
constexpr uint64_t kMaxMetaFileBytes = uint64_t{1} << 20;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

bool has_batch_files(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "data_batch_1.bin", ec) || fs::is_regular_file(dir / "test_batch.bin", ec);
}

}  // namespace

ImageDataset read_cifar10_binary_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_regular_file(path, kMaxCifarBatchFileBytes, "CIFAR-10 batch file");
  const auto total = static_cast<int64_t>(bytes.size());
  if (total == 0)
    throw Error(fmt::format("{}: empty file, expected {}-byte CIFAR-10 records", path, kCifarRecordBytes));
  const int64_t records = total / kCifarRecordBytes;
  const int64_t extra = total % kCifarRecordBytes;
  if (extra != 0)
    throw Error(fmt::format("{}: size {} bytes is not a whole number of {}-byte records ({} records + {} byte{})", path,
                            total, kCifarRecordBytes, records, extra, extra == 1 ? "" : "s"));
  ImageDataset data;
  data.size = records;
  data.height = data.width = kCifarImageSide;
  data.channels = kCifarChannels;
  data.class_names = cifar10_class_names();
  data.source = path;
  data.labels.resize(static_cast<size_t>(records));
  data.pixels.resize(static_cast<size_t>(records * data.image_bytes()));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = bytes.data() + r * kCifarRecordBytes;
    if (rec[0] >= kCifarNumClasses)
      throw Error(fmt::format("{}: record {}: label {} outside 0-{}", path, r, rec[0], kCifarNumClasses - 1));
    data.labels[static_cast<size_t>(r)] = rec[0];
    // Planar R, G, B -> interleaved HWC.
    uint8_t* out = data.image(r);
    for (int c = 0; c < kCifarChannels; ++c) {
      const uint8_t* plane = rec + 1 + c * kPlane;
      for (int64_t p = 0; p < kPlane; ++p) out[p * kCifarChannels + c] = plane[p];
    }
  }
  return data;
}

std::string find_cifar10_binary_dir(const std::string& dir) {
  if (has_batch_files(dir)) return dir;
  const fs::path sub = fs::path(dir) / kCifarBinarySubdir;
  if (has_batch_files(sub)) return sub.string();
  return "";
}

std::vector<std::string> cifar10_binary_files(Split split) {
  if (split == Split::test) return {"test_batch.bin"};
  std::vector<std::string> files;
  for (int i = 1; i <= 5; ++i) files.push_back(fmt::format("data_batch_{}.bin", i));
  return files;
}

ImageDataset load_cifar10_binary(const std::string& dir, Split split) {
  std::string root = find_cifar10_binary_dir(dir);
  if (root.empty()) root = dir;  // the errors below then name the file expected in `dir`
  ImageDataset data;
  data.height = data.width = kCifarImageSide;
  data.channels = kCifarChannels;
  std::vector<std::string> paths;
  for (const std::string& name : cifar10_binary_files(split)) {
    const std::string path = (fs::path(root) / name).string();
    ImageDataset part = read_cifar10_binary_file(path);
    data.pixels.insert(data.pixels.end(), part.pixels.begin(), part.pixels.end());
    data.labels.insert(data.labels.end(), part.labels.begin(), part.labels.end());
    data.size += part.size;
    paths.push_back(path);
  }
  const fs::path meta = fs::path(root) / "batches.meta.txt";
  std::error_code ec;
  data.class_names = fs::exists(meta, ec) ? read_cifar10_meta(meta.string()) : cifar10_class_names();
  data.source = paths.size() == 1 ? paths[0] : fmt::format("{}/data_batch_{{1..5}}.bin", root);
  for (size_t i = 0; i < data.labels.size(); ++i) {
    if (data.labels[i] >= data.num_classes())
      throw Error(fmt::format("{}: image {} has label {}, but {} names only {} classes", data.source, i, data.labels[i],
                              meta.string(), data.num_classes()));
  }
  return data;
}

void write_cifar10_binary(const ImageDataset& data, const std::string& path) {
  if (data.height != kCifarImageSide || data.width != kCifarImageSide || data.channels != kCifarChannels)
    throw Error(fmt::format("cannot write {} as CIFAR-10 records to {}: images are {}x{}x{}, the format needs 32x32x3",
                            data.source, path, data.height, data.width, data.channels));
  CONVNET_CHECK(static_cast<int64_t>(data.pixels.size()) == data.size * data.image_bytes() &&
                    static_cast<int64_t>(data.labels.size()) == data.size,
                "inconsistent data set {}", data.source);
  std::vector<uint8_t> bytes(static_cast<size_t>(data.size * kCifarRecordBytes));
  for (int64_t r = 0; r < data.size; ++r) {
    const int32_t label = data.labels[static_cast<size_t>(r)];
    if (label < 0 || label >= kCifarNumClasses)
      throw Error(fmt::format("cannot write {} as CIFAR-10 records to {}: image {} has label {}, the format needs 0-9",
                              data.source, path, r, label));
    uint8_t* rec = bytes.data() + r * kCifarRecordBytes;
    rec[0] = static_cast<uint8_t>(label);
    const uint8_t* in = data.image(r);
    for (int c = 0; c < kCifarChannels; ++c) {
      uint8_t* plane = rec + 1 + c * kPlane;
      for (int64_t p = 0; p < kPlane; ++p) plane[p] = in[p * kCifarChannels + c];
    }
  }
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "wb"));
  if (!file) throw Error(fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
  if (std::fwrite(bytes.data(), 1, bytes.size(), file.get()) != bytes.size() || std::fflush(file.get()) != 0)
    throw Error(fmt::format("{}: write failed: {}", path, std::strerror(errno)));
}

std::vector<std::string> read_cifar10_meta(const std::string& path) {
  std::istringstream in(read_regular_file_text(path, kMaxMetaFileBytes, "class-name file"));
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    const size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos) continue;
    const size_t end = line.find_last_not_of(" \t\r");
    names.push_back(line.substr(begin, end - begin + 1));
  }
  if (names.empty() || static_cast<int>(names.size()) > kCifarNumClasses)
    throw Error(
        fmt::format("{}: {} class names, expected 1 to {} (one per line)", path, names.size(), kCifarNumClasses));
  return names;
}

void write_cifar10_meta(const std::vector<std::string>& class_names, const std::string& path) {
  std::ofstream out(path);
  if (!out) throw Error(fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
  for (const std::string& name : class_names) out << name << '\n';
  out.flush();
  if (!out) throw Error(fmt::format("{}: write failed", path));
}

}  // namespace convnet
