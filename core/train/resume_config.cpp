#include "core/train/resume_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <utility>

#include "core/base/error.h"

namespace convnet {

namespace {

constexpr std::array<std::string_view, 12> kChangeable = {"train.epochs",
                                                          "train.max_steps",
                                                          "train.log_every",
                                                          "train.eval_every",
                                                          "train.checkpoint_every",
                                                          "train.save_each_epoch",
                                                          "output.plot",
                                                          "train.threads",
                                                          "data.workers",
                                                          "data.loader",
                                                          "train.distributed_timeout",
                                                          "data.path"};

using FlatConfig = std::vector<std::pair<std::string, std::string>>;  // key path -> value text, in file order

// to_yaml's block layout as key paths: nested mappings join with '.', list items (model.layers)
// get "[i]", and every leaf keeps its YAML text ("[64, M]", "{type: relu}").
FlatConfig flatten_yaml(const std::string& yaml) {
  FlatConfig out;
  std::vector<std::pair<size_t, std::string>> open;  // (indent, path) of the mappings around a line
  std::map<std::string, int> items;                  // list path -> items seen
  size_t pos = 0;
  while (pos < yaml.size()) {
    size_t end = yaml.find('\n', pos);
    if (end == std::string::npos) end = yaml.size();
    const std::string line = yaml.substr(pos, end - pos);
    pos = end + 1;
    const size_t indent = line.find_first_not_of(' ');
    if (indent == std::string::npos) continue;
    while (!open.empty() && open.back().first >= indent) open.pop_back();
    const std::string parent = open.empty() ? "" : open.back().second;
    const std::string text = line.substr(indent);
    if (text.rfind("- ", 0) == 0) {
      out.emplace_back(fmt::format("{}[{}]", parent, items[parent]++), text.substr(2));
      continue;
    }
    const size_t colon = text.find(':');
    const std::string key = (parent.empty() ? "" : parent + ".") + text.substr(0, colon);
    const std::string value = colon + 1 < text.size() ? text.substr(colon + 2) : "";
    if (value.empty())
      open.emplace_back(indent, key);
    else
      out.emplace_back(key, value);
  }
  return out;
}

const std::string* find_value(const FlatConfig& flat, const std::string& key) {
  for (const auto& [k, v] : flat)
    if (k == key) return &v;
  return nullptr;
}

bool changeable(const std::string& key) {
  return std::find(kChangeable.begin(), kChangeable.end(), key) != kChangeable.end();
}

}  // namespace

std::span<const std::string_view> resume_changeable_keys() {
  return kChangeable;
}

std::vector<ConfigDifference> config_differences(const Config& before, const Config& after) {
  const FlatConfig a = flatten_yaml(to_yaml(before)), b = flatten_yaml(to_yaml(after));
  const std::string absent = "(absent)";
  std::vector<ConfigDifference> out;
  for (const auto& [key, value] : a) {
    const std::string* other = find_value(b, key);
    if (!other || *other != value) out.push_back({key, value, other ? *other : absent});
  }
  for (const auto& [key, value] : b)
    if (!find_value(a, key)) out.push_back({key, absent, value});
  return out;
}

void check_resume_config(const std::string& checkpoint_path, const Config& checkpoint_config, const Config& config) {
  std::string refused;
  for (const ConfigDifference& d : config_differences(checkpoint_config, config))
    if (!changeable(d.key)) refused += fmt::format("\n  {}: the checkpoint has {}, now {}", d.key, d.before, d.after);
  if (refused.empty()) return;
  std::string allowed;
  for (std::string_view key : kChangeable) allowed += fmt::format("{}{}", allowed.empty() ? "" : ", ", key);
  throw ConfigError(fmt::format(
      "--resume {}: the run would continue with another config:{}\nResume with the checkpoint's own config "
      "(convnet train --resume {}, without CONFIG or those --set), or start a new run in another output.dir. A "
      "resume may change only: {}",
      checkpoint_path, refused, checkpoint_path, allowed));
}

}  // namespace convnet
