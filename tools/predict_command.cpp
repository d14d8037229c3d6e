// convnet predict CKPT IMAGE...: the top classes of each JPEG/PNG image, as the checkpoint's model
// sees it. Inputs: files, folders (every .jpg/.jpeg/.png below, sorted) and `-` (paths read from
// stdin, one per line). Each image is decoded to RGB (grey replicated, alpha composited onto black,
// 16-bit PNG reduced to 8 bits), resized to the model's input (datasets/image_resize.h: area when
// shrinking, bilinear when growing), normalised with the checkpoint's data.mean/std, and run in
// batches, with the test-time augmentation of --tta (default none): all of it by convnet::Model
// (convnet/model.h), so the C++ library answers the same. A file that cannot be read or decoded gets
// an error line and the others still get their answers; the exit status is 1 when any file failed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "convnet/model.h"
#include "core/base/error.h"
#include "datasets/image_codec.h"
#include "tools/commands.h"

namespace convnet::cli {

namespace {

bool is_image_name(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The image paths the arguments name, in order (a folder's files sorted).
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> paths;
  for (const std::string& in : inputs) {
    if (in == "-") {
      for (std::string line; std::getline(std::cin, line);)
        if (!line.empty()) paths.push_back(line);
    } else if (std::filesystem::is_directory(in)) {
      std::vector<std::string> found;
      for (const auto& e : std::filesystem::recursive_directory_iterator(in))
        if (e.is_regular_file() && is_image_name(e.path())) found.push_back(e.path().string());
      if (found.empty()) spdlog::warn("{}: no .jpg, .jpeg or .png files in this folder", in);
      std::sort(found.begin(), found.end());
      paths.insert(paths.end(), found.begin(), found.end());
    } else {
      paths.push_back(in);  // a missing file is that file's error below
    }
  }
  return paths;
}

// One image decoded, or the error that kept it out.
struct Decoded {
  DecodedImage image;
  std::string error;
};

Decoded decode(const std::string& path) {
  Decoded d;
  try {
    d.image = decode_image_file(path);
  } catch (const Error& e) {
    d.error = e.what();
  }
  return d;
}

void print_answer(const std::string& path, const std::vector<ClassScore>& top, const std::vector<std::string>& names,
                  bool json) {
  if (json) {
    nlohmann::json j;
    j["path"] = path;
    for (const ClassScore& r : top)
      j["top"].push_back(
          {{"class", names[static_cast<size_t>(r.index)]}, {"index", r.index}, {"probability", r.probability}});
    fmt::print("{}\n", j.dump());
    return;
  }
  std::string line = path + ":";
  for (const ClassScore& r : top) line += fmt::format(" {} {:.4f}", names[static_cast<size_t>(r.index)], r.probability);
  fmt::print("{}\n", line);
}

void print_error(const std::string& path, std::string error, bool json) {
  if (error.starts_with(path + ": ")) error = error.substr(path.size() + 2);  // the reader names the file too
  if (json)
    fmt::print("{}\n", nlohmann::json{{"path", path}, {"error", error}}.dump());
  else
    fmt::print("{}: error: {}\n", path, error);
}

}  // namespace

int predict_command(const PredictOptions& options) {
  LoadOptions load;
  load.backend = options.backend;
  load.tta = options.tta.empty() ? "none" : options.tta;
  load.batch_size = options.batch_size;
  Model model = Model::load(options.checkpoint, load);

  const std::vector<std::string> paths = expand_inputs(options.inputs);
  if (paths.empty()) throw ConfigError("no images given (files, folders, or - for paths on stdin)");
  bool any_failed = false;
  // Decoded a batch at a time, so that a long list of photos is never in memory at once.
  for (size_t first = 0; first < paths.size(); first += static_cast<size_t>(options.batch_size)) {
    const size_t last = std::min(paths.size(), first + static_cast<size_t>(options.batch_size));
    std::vector<Decoded> batch;
    std::vector<DecodedImage> good;
    for (size_t i = first; i < last; ++i) {
      batch.push_back(decode(paths[i]));
      if (batch.back().error.empty()) good.push_back(std::move(batch.back().image));
    }
    const std::vector<Prediction> answers = model.predict(good);
    for (size_t i = first, g = 0; i < last; ++i) {
      const Decoded& d = batch[i - first];
      if (!d.error.empty()) {
        any_failed = true;
        print_error(paths[i], d.error, options.json);
        continue;
      }
      print_answer(paths[i], answers[g++].top(options.top), model.class_names(), options.json);
    }
  }
  return any_failed ? 1 : 0;
}

}  // namespace convnet::cli
