#include "core/train/checkpoint_metadata.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "core/base/error.h"

namespace convnet {

namespace {

constexpr const char* kPreviousFormatVersion = "1";
constexpr int64_t kMaxClassNames = 100000;
constexpr int64_t kMaxImageSide = 65536;

const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "format",      "convnet.format_version", "convnet.step",        "convnet.epoch",    "convnet.batch_in_epoch",
      "convnet.rng", "convnet.best_accuracy",  "convnet.lr",          "convnet.config",   "convnet.data",
      "convnet.ema", "convnet.class_names",    "convnet.input_shape", "convnet.checksum", "convnet.file_checksum"};
  return keys;
}

bool is_checksum_key(const std::string& key) {
  return key == "convnet.checksum" || key == "convnet.file_checksum";
}

std::string rng_to_string(const Rng::State& s) {
  return fmt::format("{:016x}{:016x}{:016x}{:016x}", s[0], s[1], s[2], s[3]);
}

// Reads the values of one file's metadata; every failure names the file and the key.
class MetadataReader {
 public:
  MetadataReader(const std::map<std::string, std::string>& metadata, const std::string& path)
      : metadata_(metadata), path_(path) {}

  template <class... Args>
  [[noreturn]] void fail(const std::string& key, fmt::format_string<Args...> f, Args&&... args) const {
    throw Error(
        fmt::format("checkpoint '{}': metadata '{}' {}", path_, key, fmt::format(f, std::forward<Args>(args)...)));
  }

  const std::string* find(const std::string& key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }
  const std::string& required(const std::string& key) const {
    const std::string* value = find(key);
    if (!value) fail(key, "is missing (a damaged checkpoint)");
    return *value;
  }

  // An integer in [low, high].
  int64_t integer(const std::string& key, int64_t low, int64_t high) const {
    const std::string& text = required(key);
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < low || value > high)
      fail(key, "= '{}': expected an integer in [{}, {}]", text, low, high);
    return value;
  }

  // A finite number (`allowed` describes the range checked by the caller, for the message).
  double real(const std::string& key, const char* allowed) const {
    const std::string& text = required(key);
    double value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value))
      fail(key, "= '{}': expected {}", text, allowed);
    return value;
  }

  // The JSON value of `key`, or null when absent.
  nlohmann::json json(const std::string& key) const {
    const std::string* text = find(key);
    if (!text) return nullptr;
    try {
      return nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception&) {
      fail(key, "= '{}' is not valid JSON", *text);
    }
  }

 private:
  const std::map<std::string, std::string>& metadata_;
  const std::string& path_;
};

void check_format(const SafetensorsFile& file, const MetadataReader& meta) {
  if (const std::string* format = meta.find("format"); format && *format != "pt")
    meta.fail("format", "= '{}': expected 'pt'", *format);
  const std::string& version = meta.required("convnet.format_version");
  if (version == kCheckpointFormatVersion) {
    if (file.checksum != ChecksumCoverage::header_and_data)
      meta.fail("convnet.file_checksum", "is missing: the file is corrupt (format {} files always carry one)", version);
  } else if (version == kPreviousFormatVersion) {
    if (file.checksum == ChecksumCoverage::none)
      meta.fail("convnet.checksum", "is missing: the file is corrupt (format {} files always carry one)", version);
  } else {
    meta.fail("convnet.format_version", "= '{}': this build reads formats {} and {}", version, kCheckpointFormatVersion,
              kPreviousFormatVersion);
  }
}

void check_known_keys(const std::map<std::string, std::string>& metadata, const MetadataReader& meta) {
  for (const auto& [key, value] : metadata) {
    if (key.rfind("convnet.", 0) == 0 && !known_keys().count(key))
      meta.fail(key, "is not a key of convnet's checkpoint format {}", kCheckpointFormatVersion);
  }
}

// step, epoch and batch_in_epoch: each epoch and each batch of the current one took a step.
void read_position(const MetadataReader& meta, TrainingState& s) {
  s.step = meta.integer("convnet.step", 0, kMaxCheckpointCount);
  s.epoch = meta.integer("convnet.epoch", 0, kMaxCheckpointCount);
  s.batch_in_epoch = meta.integer("convnet.batch_in_epoch", 0, kMaxCheckpointCount);
  if (s.epoch + s.batch_in_epoch > s.step)
    meta.fail("convnet.epoch",
              "= {} + 'convnet.batch_in_epoch' = {} exceed 'convnet.step' = {} (every epoch and "
              "batch takes a step)",
              s.epoch, s.batch_in_epoch, s.step);
}

Rng::State read_rng(const MetadataReader& meta) {
  const std::string& text = meta.required("convnet.rng");
  Rng::State state{};
  bool valid = text.size() == 64;
  for (size_t i = 0; valid && i < 4; ++i) {
    const char* end = text.data() + 16 * (i + 1);
    const auto [ptr, ec] = std::from_chars(text.data() + 16 * i, end, state[i], 16);
    valid = ec == std::errc() && ptr == end;
  }
  if (!valid) meta.fail("convnet.rng", "= '{}': expected 64 hexadecimal digits", text);
  if (state == Rng::State{}) meta.fail("convnet.rng", "is all zero, which is not a state of the generator");
  return state;
}

std::vector<std::string> read_class_names(const MetadataReader& meta) {
  const char* key = "convnet.class_names";
  const nlohmann::json j = meta.json(key);
  if (j.is_null()) return {};
  if (!j.is_array() || j.empty() || static_cast<int64_t>(j.size()) > kMaxClassNames)
    meta.fail(key, "is not a list of 1 to {} names", kMaxClassNames);
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const nlohmann::json& name : j) {
    if (!name.is_string() || name.get<std::string>().empty()) meta.fail(key, "holds {}: expected a name", name.dump());
    if (!seen.insert(name.get<std::string>()).second) meta.fail(key, "names class '{}' twice", name.get<std::string>());
    names.push_back(name.get<std::string>());
  }
  return names;
}

Shape read_input_shape(const MetadataReader& meta) {
  const char* key = "convnet.input_shape";
  const nlohmann::json j = meta.json(key);
  if (j.is_null()) return {};
  Shape shape;
  if (j.is_array() && j.size() == 3)
    for (const nlohmann::json& d : j)
      if (d.is_number_integer() && d.get<int64_t>() >= 1 && d.get<int64_t>() <= kMaxImageSide)
        shape.push_back(d.get<int64_t>());
  if (shape.size() != 3) meta.fail(key, "= '{}': expected [H, W, C], each in [1, {}]", j.dump(), kMaxImageSide);
  return shape;
}

}  // namespace

std::map<std::string, std::string> checkpoint_metadata(const TrainingState& state, const Shape& input_shape,
                                                       const std::string& ema_mode) {
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"convnet.format_version", kCheckpointFormatVersion},
      {"convnet.step", std::to_string(state.step)},
      {"convnet.epoch", std::to_string(state.epoch)},
      {"convnet.batch_in_epoch", std::to_string(state.batch_in_epoch)},
      {"convnet.rng", rng_to_string(state.rng)},
      {"convnet.best_accuracy", fmt::format("{}", state.best_accuracy)},
      {"convnet.lr", fmt::format("{}", state.lr)},
      {"convnet.config", state.config_yaml},
      {"convnet.data", state.data_fingerprint},
      {"convnet.input_shape", nlohmann::json(input_shape).dump()},
  };
  if (!state.class_names.empty()) meta["convnet.class_names"] = nlohmann::json(state.class_names).dump();
  if (!ema_mode.empty()) meta["convnet.ema"] = ema_mode;
  return meta;
}

bool has_convnet_metadata(const std::map<std::string, std::string>& metadata) {
  for (const auto& [key, value] : metadata)
    if (key.rfind("convnet.", 0) == 0 && !is_checksum_key(key)) return true;
  return false;
}

TrainingState parse_checkpoint_metadata(const SafetensorsFile& file, const std::string& path) {
  if (!has_convnet_metadata(file.metadata))
    throw Error(fmt::format(
        "checkpoint '{}': not a convnet checkpoint (no convnet metadata); to load weights another program wrote "
        "with the model's tensor names (PyTorch's safetensors save_file), name the model with --config CONFIG",
        path));
  const MetadataReader meta(file.metadata, path);
  check_format(file, meta);
  check_known_keys(file.metadata, meta);
  TrainingState s;
  read_position(meta, s);
  s.rng = read_rng(meta);
  s.best_accuracy = meta.real("convnet.best_accuracy", "-1 (not evaluated) or an accuracy in [0, 1]");
  if (s.best_accuracy != -1 && (s.best_accuracy < 0 || s.best_accuracy > 1))
    meta.fail("convnet.best_accuracy", "= {}: expected -1 (not evaluated) or an accuracy in [0, 1]", s.best_accuracy);
  s.lr = meta.real("convnet.lr", "a finite learning rate >= 0");
  if (s.lr < 0) meta.fail("convnet.lr", "= {}: expected a finite learning rate >= 0", s.lr);
  s.config_yaml = meta.required("convnet.config");
  s.data_fingerprint = meta.required("convnet.data");
  if (const std::string* ema = meta.find("convnet.ema"); ema && *ema != "ema" && *ema != "lookahead")
    meta.fail("convnet.ema", "= '{}': expected ema or lookahead", *ema);
  s.class_names = read_class_names(meta);
  read_input_shape(meta);
  return s;
}

Shape checkpoint_input_shape(const std::map<std::string, std::string>& metadata, const std::string& path) {
  const MetadataReader meta(metadata, path);
  Shape shape = read_input_shape(meta);
  if (!shape.empty()) return shape;
  const std::string* data = meta.find("convnet.data");  // "N=50000 H=32 W=32 C=3 classes=10 fnv1a64=..."
  long long n = 0, h = 0, w = 0, c = 0;
  if (data && std::sscanf(data->c_str(), "N=%lld H=%lld W=%lld C=%lld", &n, &h, &w, &c) == 4 && h >= 1 &&
      h <= kMaxImageSide && w >= 1 && w <= kMaxImageSide && c >= 1 && c <= kMaxImageSide)
    return {h, w, c};
  return {};
}

}  // namespace convnet
