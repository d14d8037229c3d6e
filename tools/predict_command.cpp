// convnet predict CKPT IMAGE...: the top classes of each JPEG/PNG image, as the checkpoint's model
// sees it. Inputs: files, folders (every .jpg/.jpeg/.png below, sorted) and `-` (paths read from
// stdin, one per line). Each image is decoded to RGB (grey replicated, alpha composited onto black,
// 16-bit PNG reduced to 8 bits), resized to the model's input (datasets/image_resize.h: area when
// shrinking, bilinear when growing), normalised with the checkpoint's data.mean/std, and run in
// batches, with the test-time augmentation of --tta (default none). A file that cannot be read or
// decoded gets an error line and the others still get their answers; the exit status is 1 when any
// file failed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <vector>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/tta_logits.h"
#include "datasets/image_codec.h"
#include "datasets/image_resize.h"
#include "tools/commands.h"
#include "tools/session.h"

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

// One image as the model's normalised input [H, W, C], or the error that kept it out.
struct Prepared {
  std::vector<float> pixels;
  std::string error;
};

Prepared prepare(const std::string& path, const Shape& input, const DataConfig& data) {
  Prepared p;
  try {
    if (!std::filesystem::is_regular_file(path)) throw Error(fmt::format("{}: not a regular file", path));
    const DecodedImage image = decode_image_file(path);
    p.pixels = resize_rgb(image, static_cast<int>(input[0]), static_cast<int>(input[1]));
    for (size_t i = 0; i < p.pixels.size(); ++i) {
      const size_t c = i % 3;
      p.pixels[i] = (p.pixels[i] / 255.0f - data.mean[c]) / data.std[c];
    }
  } catch (const Error& e) {
    p.error = e.what();
  }
  return p;
}

struct Ranked {
  int index;
  double probability;
};

// Softmax of one row of logits, the `k` most probable classes first.
std::vector<Ranked> top_k(const float* logits, int64_t classes, int k) {
  const float peak = *std::max_element(logits, logits + classes);
  std::vector<double> p(static_cast<size_t>(classes));
  double total = 0;
  for (int64_t c = 0; c < classes; ++c) total += p[static_cast<size_t>(c)] = std::exp(double(logits[c]) - peak);
  std::vector<Ranked> ranked;
  for (int64_t c = 0; c < classes; ++c) ranked.push_back({static_cast<int>(c), p[static_cast<size_t>(c)] / total});
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const Ranked& a, const Ranked& b) { return a.probability > b.probability; });
  ranked.resize(static_cast<size_t>(std::min<int64_t>(k, classes)));
  return ranked;
}

void print_answer(const std::string& path, const std::vector<Ranked>& top, const std::vector<std::string>& names,
                  bool json) {
  if (json) {
    nlohmann::json j;
    j["path"] = path;
    for (const Ranked& r : top)
      j["top"].push_back(
          {{"class", names[static_cast<size_t>(r.index)]}, {"index", r.index}, {"probability", r.probability}});
    fmt::print("{}\n", j.dump());
    return;
  }
  std::string line = path + ":";
  for (const Ranked& r : top) line += fmt::format(" {} {:.4f}", names[static_cast<size_t>(r.index)], r.probability);
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
  const CheckpointSummary summary = read_checkpoint_summary(options.checkpoint);
  std::vector<std::string> overrides;
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  const Config config = parse_config(summary.state.config_yaml, options.checkpoint + " (convnet.config)", overrides);
  const Shape input = example_shape(config.data);
  if (input.size() != 3 || input[2] != 3)
    throw ConfigError(fmt::format("{}: the model reads {} inputs; convnet predict feeds RGB images", options.checkpoint,
                                  shape_str(input)));
  Backends backends(config.train);
  Graph graph;
  build_graph(config, input, backends, graph);
  load_checkpoint(options.checkpoint, graph, nullptr);
  const int64_t classes = graph.output_shape()[0];
  std::vector<std::string> names = summary.state.class_names;
  if (names.size() != static_cast<size_t>(classes)) {
    names.clear();
    for (int64_t c = 0; c < classes; ++c) names.push_back(fmt::format("class{}", c));
  }
  TtaLogits logits_of(graph, parse_tta(options.tta.empty() ? "none" : options.tta, "--tta"));

  const std::vector<std::string> paths = expand_inputs(options.inputs);
  if (paths.empty()) throw ConfigError("no images given (files, folders, or - for paths on stdin)");
  const int64_t pixels = shape_numel(input);
  bool any_failed = false;
  for (size_t first = 0; first < paths.size(); first += static_cast<size_t>(options.batch_size)) {
    const size_t last = std::min(paths.size(), first + static_cast<size_t>(options.batch_size));
    std::vector<Prepared> batch;
    std::vector<size_t> good;
    for (size_t i = first; i < last; ++i) {
      batch.push_back(prepare(paths[i], input, config.data));
      if (batch.back().error.empty()) good.push_back(i - first);
    }
    Tensor host_logits;
    if (!good.empty()) {
      Tensor images({static_cast<int64_t>(good.size()), input[0], input[1], input[2]});
      for (size_t g = 0; g < good.size(); ++g)
        std::copy(batch[good[g]].pixels.begin(), batch[good[g]].pixels.end(), images.f32() + g * pixels);
      const Tensor& logits = logits_of(images);
      host_logits = Tensor(logits.shape());
      graph.output_backend().copy(host_logits, logits);
    }
    for (size_t i = first, g = 0; i < last; ++i) {
      const Prepared& p = batch[i - first];
      if (!p.error.empty()) {
        any_failed = true;
        print_error(paths[i], p.error, options.json);
        continue;
      }
      print_answer(paths[i], top_k(host_logits.f32() + g++ * classes, classes, options.top), names, options.json);
    }
  }
  return any_failed ? 1 : 0;
}

}  // namespace convnet::cli
