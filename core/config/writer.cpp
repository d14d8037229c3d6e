// Writing a configuration: every schema key in block style, numbers in their shortest
// round-trip form, so parse_config(to_yaml(c)) reproduces c.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/config/schema.h"

namespace convnet {

namespace {

using config_schema::Field;
using config_schema::LayerKey;

// fmt's "{}" prints the shortest text that reads back as the same float or double.
template <typename T>
std::string number_text(T value) {
  return fmt::format("{}", value);
}

void emit_layer(YAML::Emitter& out, const LayerSpec& spec) {
  const config_schema::LayerType* type = config_schema::find_layer_type(spec.type);
  CONVNET_CHECK(type != nullptr, "model.layers holds a layer of unknown type '{}'", spec.type);
  out << YAML::Flow << YAML::BeginMap << YAML::Key << "type" << YAML::Value << spec.type;
  for (const LayerKey& key : type->keys) {
    if (auto member = std::get_if<int LayerSpec::*>(&key.member)) {
      out << YAML::Key << std::string(key.name) << YAML::Value << number_text(spec.*(*member));
    } else if (auto fmember = std::get_if<float LayerSpec::*>(&key.member)) {
      out << YAML::Key << std::string(key.name) << YAML::Value << number_text(spec.*(*fmember));
    } else if (auto bmember = std::get_if<bool LayerSpec::*>(&key.member)) {
      out << YAML::Key << std::string(key.name) << YAML::Value << (spec.*(*bmember) ? "true" : "false");
    } else if (auto smember = std::get_if<std::string LayerSpec::*>(&key.member)) {
      if ((spec.*(*smember)).empty()) continue;  // an empty name means "<type><index>": leave it out
      out << YAML::Key << std::string(key.name) << YAML::Value << spec.*(*smember);
    } else if (auto lmember = std::get_if<std::vector<std::string> LayerSpec::*>(&key.member)) {
      const std::vector<std::string>& items = spec.*(*lmember);
      if (items.empty()) continue;  // empty `from`: the previous layer
      out << YAML::Key << std::string(key.name) << YAML::Value << YAML::Flow << items;
    }
  }
  out << YAML::EndMap;
}

template <typename T>
void emit_number_list(YAML::Emitter& out, const std::vector<T>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (T v : values) out << number_text(v);
  out << YAML::EndSeq;
}

void emit_value(YAML::Emitter& out, const Field& field, Config& config) {
  const auto& ref = field.ref;
  if (auto get = std::get_if<int& (*)(Config&)>(&ref)) {
    out << number_text((*get)(config));
  } else if (auto get64 = std::get_if<int64_t& (*)(Config&)>(&ref)) {
    out << number_text((*get64)(config));
  } else if (auto getu = std::get_if<uint64_t& (*)(Config&)>(&ref)) {
    out << number_text((*getu)(config));
  } else if (auto getf = std::get_if<float& (*)(Config&)>(&ref)) {
    out << number_text((*getf)(config));
  } else if (auto getd = std::get_if<double& (*)(Config&)>(&ref)) {
    out << number_text((*getd)(config));
  } else if (auto getb = std::get_if<bool& (*)(Config&)>(&ref)) {
    out << ((*getb)(config) ? "true" : "false");
  } else if (auto gets = std::get_if<std::string& (*)(Config&)>(&ref)) {
    out << (*gets)(config);
  } else if (auto getfl = std::get_if<std::vector<float>& (*)(Config&)>(&ref)) {
    emit_number_list(out, (*getfl)(config));
  } else if (auto getdl = std::get_if<std::vector<double>& (*)(Config&)>(&ref)) {
    emit_number_list(out, (*getdl)(config));
  } else if (auto getil = std::get_if<std::vector<int>& (*)(Config&)>(&ref)) {
    emit_number_list(out, (*getil)(config));
  } else if (auto getcfg = std::get_if<std::vector<std::string>& (*)(Config&)>(&ref)) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const std::string& item : (*getcfg)(config)) out << item;
    out << YAML::EndSeq;
  } else if (auto getl = std::get_if<std::vector<LayerSpec>& (*)(Config&)>(&ref)) {
    const std::vector<LayerSpec>& layers = (*getl)(config);
    if (layers.empty()) {
      out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
    } else {
      out << YAML::BeginSeq;
      for (const LayerSpec& spec : layers) emit_layer(out, spec);
      out << YAML::EndSeq;
    }
  } else if (auto getm = std::get_if<std::map<std::string, std::string>& (*)(Config&)>(&ref)) {
    const std::map<std::string, std::string>& entries = (*getm)(config);
    if (entries.empty()) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [name, value] : entries) out << YAML::Key << name << YAML::Value << value;
    out << YAML::EndMap;
  }
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> names;
  size_t start = 0;
  for (size_t dot; (dot = path.find('.', start)) != std::string_view::npos; start = dot + 1)
    names.emplace_back(path.substr(start, dot - start));
  names.emplace_back(path.substr(start));
  return names;
}

}  // namespace

std::string to_yaml(const Config& config) {
  Config copy = config;  // the schema's accessors hand out mutable references
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string> open;  // the sections currently open, outermost first
  for (const Field& field : config_schema::fields()) {
    std::vector<std::string> names = split_path(field.path);
    const std::string key = names.back();
    names.pop_back();
    size_t common = 0;
    while (common < open.size() && common < names.size() && open[common] == names[common]) ++common;
    while (open.size() > common) {
      out << YAML::EndMap;
      open.pop_back();
    }
    while (open.size() < names.size()) {
      out << YAML::Key << names[open.size()] << YAML::Value << YAML::BeginMap;
      open.push_back(names[open.size()]);
    }
    out << YAML::Key << key << YAML::Value;
    emit_value(out, field, copy);
  }
  while (!open.empty()) {
    out << YAML::EndMap;
    open.pop_back();
  }
  out << YAML::EndMap;
  CONVNET_CHECK(out.good(), "YAML emitter failed: {}", out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace convnet
