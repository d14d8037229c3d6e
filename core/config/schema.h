// The configuration schema: every key of the YAML file, the Config field it fills, its allowed
// range or values, and the keys of each model.layers type. The reader (config.cpp) and the
// writer (writer.cpp) both walk these tables, so a key is declared in exactly one place.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config/config.h"

namespace convnet::config_schema {

// Upper bounds on the numbers that size an allocation, a thread pool or a loop, each far above
// any real use, so that a slip such as synthetic_image_size: 30000 is a config error stating the
// bound instead of std::bad_alloc, a hang or the kernel's OOM killer. Whether a model within
// them fits the machine is checked once it is built (core/train/memory_estimate.h).
inline constexpr int kMaxChannels = 65536;  // model.cfg counts, widths, out_channels, out_features, num_classes, groups
inline constexpr int kMaxBatchSize = 65536;              // train.batch_size
inline constexpr int kMaxWindow = 1024;                  // a layer's kernel, stride, padding, dilation
inline constexpr int kMaxListItems = 1024;               // entries of model.cfg, widths, blocks, layers, milestones
inline constexpr int kMaxBlocks = 1024;                  // BasicBlocks in one ResNet stage
inline constexpr int kMaxSyntheticImageSize = 512;       // data.synthetic_image_size
inline constexpr int64_t kMaxSyntheticImages = 1000000;  // data.synthetic_train_size, synthetic_test_size
inline constexpr int64_t kMaxSyntheticBytes = int64_t{4} << 30;  // all synthetic images: (train + test) * side^2 * 3
inline constexpr int kMaxCropPadding = 256;                      // data.augment.crop_padding
inline constexpr int kMaxCutout = 1024;                          // data.augment.cutout
inline constexpr int kMaxWorkers = 256;                          // data.workers
inline constexpr int kMaxThreads = 1024;                         // train.threads
inline constexpr double kMaxEpochs = 1e6;  // epochs, warmup_epochs, milestones, ema.start_epochs, bias_train_epochs

// An interval of allowed numbers; each end open or closed, infinite when unbounded.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;

  static Range any() { return {}; }
  static Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, false}; }
  static Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, false}; }
  static Range closed(double lo, double hi) { return {lo, hi, false, false}; }      // [lo, hi]
  static Range closed_open(double lo, double hi) { return {lo, hi, false, true}; }  // [lo, hi)
  static Range open_closed(double lo, double hi) { return {lo, hi, true, false}; }  // (lo, hi]

  bool contains(double v) const;
  // " >= 1", " > 0", " in [0, 1)", or "" when unbounded: appended to "an integer" / "a number".
  std::string describe() const;
};

// Where a key's value lives in Config. The alternative also says how the value is read:
// vector<float> is a fixed-length number list (data.mean), vector<double> an increasing list
// (milestones), vector<int> a list of integers in `range` (model.widths), vector<string> the VGG
// cfg list, vector<LayerSpec> model.layers, and a map one free-named key per entry
// (train.layer_backends: layer name -> one of `choices`).
using Accessor = std::variant<int& (*)(Config&), int64_t& (*)(Config&), uint64_t& (*)(Config&), float& (*)(Config&),
                              double& (*)(Config&), bool& (*)(Config&), std::string& (*)(Config&),
                              std::vector<float>& (*)(Config&), std::vector<double>& (*)(Config&),
                              std::vector<int>& (*)(Config&), std::vector<std::string>& (*)(Config&),
                              std::vector<LayerSpec>& (*)(Config&), std::map<std::string, std::string>& (*)(Config&)>;

struct Field {
  std::string_view path;                  // "data.augment.crop_padding"
  Accessor ref;                           //
  Range range = Range::any();             // numbers, and every item of a number list
  std::vector<std::string_view> choices;  // strings and map values: the allowed values; empty = any
  int list_size = 0;                      // vector<float>: the required length
};

// Every key in file order, sections contiguous (the writer relies on it).
std::span<const Field> fields();
// The field at `path` ("train.epochs"), or nullptr.
const Field* find_field(std::string_view path);
// True for a field whose value is a mapping with names chosen by the user (train.layer_backends).
bool is_open_map(const Field& field);
// "" (the top level), "model", "data", "data.augment", "optimizer", "schedule", "train", "output".
bool is_section(std::string_view path);
// The names directly under a section: its keys and subsections, in file order.
std::vector<std::string> section_keys(std::string_view section);

// One key of a model.layers item.
struct LayerKey {
  std::string_view name;
  std::variant<int LayerSpec::*, float LayerSpec::*, bool LayerSpec::*, std::string LayerSpec::*,
               std::vector<std::string> LayerSpec::*>
      member;
  Range range = Range::any();
  bool required = false;
};

struct LayerType {
  std::string_view type;
  std::vector<LayerKey> keys;  // besides `type`, in the order the writer emits them
};

std::span<const LayerType> layer_types();
const LayerType* find_layer_type(std::string_view type);
bool is_pool(std::string_view type);  // max_pool, avg_pool: kernel defaults to 2, stride to kernel

// The candidate closest to `key` by edit distance when it is close enough to be a likely typo
// (e.g. "lrr" -> "lr"), else "".
std::string closest_match(std::string_view key, const std::vector<std::string>& candidates);
// "a, b, c"
std::string join(const std::vector<std::string>& items);

}  // namespace convnet::config_schema
