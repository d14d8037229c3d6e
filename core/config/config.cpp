// Reading a configuration: YAML text -> document, --set overrides applied to the document,
// then every key checked against the schema (schema.h) while filling a Config.
#include "core/config/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/base/error.h"
#include "core/base/regular_file.h"
#include "core/config/printable.h"
#include "core/config/schema.h"
#include "core/config/yaml_guard.h"

namespace convnet {

namespace {

using config_schema::Field;
using config_schema::LayerKey;
using config_schema::LayerType;
using config_schema::Range;

// ---- scalar text -> numbers ---------------------------------------------------------------

std::string_view without_plus(std::string_view text) {
  return text.size() > 1 && text[0] == '+' ? text.substr(1) : text;
}

template <typename T>
std::optional<T> parse_floating(std::string_view text) {
  text = without_plus(text);
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// True when the text reads as a number (possibly out of range), so messages print it unquoted.
bool looks_numeric(std::string_view text) {
  text = without_plus(text);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && end == text.data() + text.size() &&
         (ec == std::errc() || ec == std::errc::result_out_of_range);
}

// What a node holds, for "got ..." in messages.
std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  const std::string& text = node.Scalar();
  if (text.empty()) return "an empty string";
  return looks_numeric(text) ? text : fmt::format("'{}'", printable(text));
}

std::string list_of(const std::vector<std::string_view>& items) {
  return fmt::format("{}", fmt::join(items, ", "));
}

struct Item {
  std::string path;  // "data.mean[1]"
  YAML::Mark mark;
};

// The mark of the first node of the second YAML document in `text`, if there is one. yaml-cpp
// 0.7's LoadAll never returns for a stray ',' at the top level (every call yields another empty
// document without consuming it), so documents are counted here, at most two.
class SecondDocument : public YAML::EventHandler {
 public:
  static std::optional<YAML::Mark> find(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    SecondDocument handler;
    if (!parser.HandleNextDocument(handler) || !parser.HandleNextDocument(handler)) return std::nullopt;
    return handler.node_;
  }

 private:
  void OnDocumentStart(const YAML::Mark&) override { ++documents_; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override { node(mark); }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}
  void node(const YAML::Mark& mark) {
    if (documents_ == 2 && !node_) node_ = mark;
  }
  int documents_ = 0;
  std::optional<YAML::Mark> node_;
};

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  YAML::Node load(const std::string& text) const {
    YAML::Node root;
    std::optional<YAML::Mark> second;
    try {
      root = YAML::Load(text);  // the first document
      second = SecondDocument::find(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError(fmt::format("{}: invalid YAML: {}", at(e.mark), config_yaml::parse_problem(e)));
    }
    if (root.IsNull())
      throw ConfigError(fmt::format("{}:1: the configuration is empty; expected a mapping with the sections {}",
                                    source_, config_schema::join(config_schema::section_keys(""))));
    if (second)
      throw ConfigError(
          fmt::format("{}: a second YAML document starts here; a configuration is one document", at(*second)));
    if (const auto problem = config_yaml::find_problem(root))
      throw ConfigError(fmt::format("{}: {}", at(problem->mark), problem->message));
    if (!root.IsMap())
      throw ConfigError(fmt::format("{}: expected a mapping with the sections {} at the top level, got {}",
                                    at(root.Mark()), config_schema::join(config_schema::section_keys("")),
                                    describe(root)));
    return root;
  }

  // Applies "a.b.c=value" overrides to `root` (a mapping), each value parsed as YAML.
  void apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides) {
    for (const std::string& text : overrides) {
      const size_t eq = text.find('=');
      std::vector<std::string> names;
      if (eq != std::string::npos) names = split_key(text.substr(0, eq));
      if (names.empty()) throw ConfigError(fmt::format("--set {}: expected KEY=VALUE, e.g. train.epochs=20", text));
      const std::string key = text.substr(0, eq);
      check_override_key(text, key, names);

      YAML::Node value;
      try {
        value = YAML::Load(text.substr(eq + 1));
      } catch (const YAML::Exception& e) {
        throw ConfigError(fmt::format("--set {}: invalid YAML value: {}", text, config_yaml::parse_problem(e)));
      }
      if (const auto problem = config_yaml::find_problem(value))
        throw ConfigError(fmt::format("--set {}: {}", text, problem->message));
      set_in_document(root, names, value);
      overrides_[key] = text;
    }
  }

  Config read(const YAML::Node& root) {
    Config config;
    read_section(root, "", config);
    check_combinations(config);
    return config;
  }

 private:
  // ---- where a problem is -----------------------------------------------------------------

  std::string at(const YAML::Mark& mark) const {
    if (mark.is_null() || mark.line < 0) return source_;
    return fmt::format("{}:{}", source_, mark.line + 1);
  }

  // The --set that wrote `path` or one of its parents, if any.
  const std::string* override_of(const std::string& path) const {
    for (const auto& [key, text] : overrides_) {
      if (path.compare(0, key.size(), key) == 0 &&
          (path.size() == key.size() || path[key.size()] == '.' || path[key.size()] == '['))
        return &text;
    }
    return nullptr;
  }

  std::string where(const std::string& path, const YAML::Mark& mark) const {
    if (const std::string* text = override_of(path)) return "--set " + *text;
    return at(mark);
  }

  [[noreturn]] void fail(const std::string& path, const YAML::Mark& mark, const std::string& problem) const {
    throw ConfigError(fmt::format("{}: {}: {}", where(path, mark), path, problem));
  }
  [[noreturn]] void fail(const Item& item, const std::string& problem) const { fail(item.path, item.mark, problem); }

  // ---- overrides ------------------------------------------------------------------------

  static std::vector<std::string> split_key(const std::string& key) {
    std::vector<std::string> names;
    size_t start = 0;
    while (true) {
      const size_t dot = key.find('.', start);
      const std::string name = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (name.empty()) return {};
      names.push_back(name);
      if (dot == std::string::npos) return names;
      start = dot + 1;
    }
  }

  // The key must name a value in the schema (not a section, not an unknown name).
  static void check_override_key(const std::string& text, const std::string& key,
                                 const std::vector<std::string>& names) {
    std::string section;
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string path = section.empty() ? names[i] : section + "." + names[i];
      const bool last = i + 1 == names.size();
      if (config_schema::is_section(path)) {
        if (last)
          throw ConfigError(fmt::format("--set {}: {} is a section; set its keys one at a time, e.g. {}.{}=...", text,
                                        key, key, config_schema::section_keys(path).front()));
        section = path;
        continue;
      }
      if (const Field* field = config_schema::find_field(path)) {
        if (last) return;
        if (config_schema::is_open_map(*field) && i + 2 == names.size()) return;  // one entry of the map
        throw ConfigError(fmt::format("--set {}: unknown key {} ({} is a value, not a section)", text, key, path));
      }
      const std::vector<std::string> candidates = config_schema::section_keys(section);
      const std::string guess = config_schema::closest_match(names[i], candidates);
      if (!guess.empty())
        throw ConfigError(fmt::format("--set {}: unknown key {} (did you mean '{}'?)", text, key, guess));
      throw ConfigError(fmt::format("--set {}: unknown key {} (keys{}: {})", text, key,
                                    section.empty() ? "" : " of " + section, config_schema::join(candidates)));
    }
  }

  static void set_in_document(YAML::Node& root, const std::vector<std::string>& names, const YAML::Node& value) {
    YAML::Node node = root;  // a handle: reset() moves it, assignment would overwrite the tree
    for (size_t i = 0; i + 1 < names.size(); ++i) {
      YAML::Node child = node[names[i]];
      if (!child.IsDefined() || child.IsNull()) {
        node[names[i]] = YAML::Node(YAML::NodeType::Map);
        child.reset(node[names[i]]);
      } else if (!child.IsMap()) {
        return;  // the file's own section is malformed; reading reports it
      }
      node.reset(child);
    }
    node[names.back()] = value;
  }

  // ---- sections -------------------------------------------------------------------------

  // Key names of a mapping, checked for being plain names and for duplicates.
  std::string key_name(const YAML::Node& key, const std::string& parent, std::map<std::string, int>& seen_lines) const {
    const std::string shown = parent.empty() ? "(top level)" : parent;
    if (!key.IsScalar() || key.Scalar().empty() || !is_printable_utf8(key.Scalar()))
      fail(shown, key.Mark(), fmt::format("expected a key name, got {}", describe(key)));
    const std::string& name = key.Scalar();
    const std::string path = parent.empty() ? name : parent + "." + name;
    const auto [it, inserted] = seen_lines.emplace(name, key.Mark().line + 1);
    if (!inserted) fail(path, key.Mark(), fmt::format("duplicate key (first given on line {})", it->second));
    return name;
  }

  void read_section(const YAML::Node& map, const std::string& section, Config& config) {
    std::map<std::string, int> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string name = key_name(it->first, section, seen);
      const std::string path = section.empty() ? name : section + "." + name;
      const YAML::Mark mark = it->first.Mark();
      // A copy: the iterator hands out a temporary pair, so a reference to it->second dangles.
      const YAML::Node value = it->second;
      if (config_schema::is_section(path)) {
        if (value.IsNull()) continue;  // "train:" with nothing under it: all defaults
        if (!value.IsMap()) fail(path, mark, fmt::format("expected a mapping of keys, got {}", describe(value)));
        read_section(value, path, config);
      } else if (const Field* field = config_schema::find_field(path)) {
        marks_[path] = mark;
        read_field(*field, {path, mark}, value, config);
      } else {
        unknown_key({path, mark}, name, config_schema::section_keys(section), "");
      }
    }
  }

  [[noreturn]] void unknown_key(const Item& item, const std::string& name, const std::vector<std::string>& candidates,
                                const std::string& of) const {
    if (name == "<<") fail(item, "YAML merge keys (<<) are not supported; write the keys out");
    const std::string guess = config_schema::closest_match(name, candidates);
    if (!guess.empty()) fail(item, fmt::format("unknown key (did you mean '{}'?)", guess));
    fail(item, fmt::format("unknown key (the keys{} are {})", of, config_schema::join(candidates)));
  }

  // ---- values ---------------------------------------------------------------------------

  void read_field(const Field& field, const Item& item, const YAML::Node& value, Config& config) {
    if (value.IsSequence() && value.size() > static_cast<size_t>(config_schema::kMaxListItems))
      fail(item,
           fmt::format("expected a list of at most {} entries, got {}", config_schema::kMaxListItems, value.size()));
    const auto& ref = field.ref;
    if (auto get = std::get_if<int& (*)(Config&)>(&ref)) {
      (*get)(config) = read_integer<int>(value, item, field.range);
    } else if (auto get64 = std::get_if<int64_t& (*)(Config&)>(&ref)) {
      (*get64)(config) = read_integer<int64_t>(value, item, field.range);
    } else if (auto getu = std::get_if<uint64_t& (*)(Config&)>(&ref)) {
      (*getu)(config) = read_integer<uint64_t>(value, item, field.range);
    } else if (auto getf = std::get_if<float& (*)(Config&)>(&ref)) {
      (*getf)(config) = read_number<float>(value, item, field.range);
    } else if (auto getd = std::get_if<double& (*)(Config&)>(&ref)) {
      (*getd)(config) = read_number<double>(value, item, field.range);
    } else if (auto getb = std::get_if<bool& (*)(Config&)>(&ref)) {
      (*getb)(config) = read_bool(value, item);
    } else if (auto gets = std::get_if<std::string& (*)(Config&)>(&ref)) {
      (*gets)(config) = field.choices.empty() ? read_string(value, item) : read_choice(value, item, field.choices);
    } else if (auto getfl = std::get_if<std::vector<float>& (*)(Config&)>(&ref)) {
      (*getfl)(config) = read_fixed_list(value, item, field);
    } else if (auto getdl = std::get_if<std::vector<double>& (*)(Config&)>(&ref)) {
      (*getdl)(config) = read_increasing_list(value, item, field.range);
    } else if (auto getil = std::get_if<std::vector<int>& (*)(Config&)>(&ref)) {
      (*getil)(config) = read_integer_list(value, item, field.range);
    } else if (auto getcfg = std::get_if<std::vector<std::string>& (*)(Config&)>(&ref)) {
      (*getcfg)(config) = read_vgg_cfg(value, item);
    } else if (auto getl = std::get_if<std::vector<LayerSpec>& (*)(Config&)>(&ref)) {
      (*getl)(config) = read_layers(value, item);
    } else if (auto getm = std::get_if<std::map<std::string, std::string>& (*)(Config&)>(&ref)) {
      (*getm)(config) = read_choice_map(value, item, field.choices);
    }
  }

  template <typename T>
  T read_integer(const YAML::Node& value, const Item& item, const Range& range) const {
    const std::string expected = "expected an integer" + range.describe();
    if (!value.IsScalar()) fail(item, fmt::format("{}, got {}", expected, describe(value)));
    const std::string& raw = value.Scalar();
    const std::string_view text = without_plus(raw);
    // Exact integer text first; then whole numbers written as decimals ("1e4"), exact below 2^53.
    using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
    Wide wide = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), wide);
    const bool integer_text = !text.empty() && end == text.data() + text.size();
    if (integer_text && ec == std::errc::result_out_of_range)
      fail(item, fmt::format("{}, got {} (too large)", expected, raw));
    if (!integer_text || ec != std::errc()) {
      const std::optional<double> number = parse_floating<double>(text);
      if (!number) fail(item, fmt::format("{}, got {}", expected, describe(value)));
      if (*number != std::floor(*number)) fail(item, fmt::format("{}, got {}", expected, raw));
      if (!range.contains(*number)) fail(item, fmt::format("{}, got {}", expected, raw));
      if (std::fabs(*number) > 9007199254740992.0) fail(item, fmt::format("{}, got {} (too large)", expected, raw));
      wide = static_cast<Wide>(*number);
    }
    if (!range.contains(static_cast<double>(wide))) fail(item, fmt::format("{}, got {}", expected, raw));
    if constexpr (sizeof(T) < sizeof(Wide)) {
      if (wide > std::numeric_limits<T>::max()) fail(item, fmt::format("{}, got {} (too large)", expected, raw));
      if (wide < std::numeric_limits<T>::min()) fail(item, fmt::format("{}, got {} (too small)", expected, raw));
    }
    return static_cast<T>(wide);
  }

  // float fields are parsed as float directly so the shortest text of a float reads back exactly.
  template <typename T>
  T read_number(const YAML::Node& value, const Item& item, const Range& range) const {
    const std::string expected = "expected a number" + range.describe();
    if (!value.IsScalar()) fail(item, fmt::format("{}, got {}", expected, describe(value)));
    const std::optional<T> number = parse_floating<T>(value.Scalar());
    if (!number || !range.contains(static_cast<double>(*number)))
      fail(item, fmt::format("{}, got {}", expected, describe(value)));
    return *number;
  }

  bool read_bool(const YAML::Node& value, const Item& item) const {
    if (value.IsScalar()) {
      const std::string& s = value.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    fail(item, fmt::format("expected true or false, got {}", describe(value)));
  }

  std::string read_string(const YAML::Node& value, const Item& item) const {
    if (!value.IsScalar()) fail(item, fmt::format("expected a string, got {}", describe(value)));
    return value.Scalar();
  }

  std::string read_choice(const YAML::Node& value, const Item& item,
                          const std::vector<std::string_view>& choices) const {
    if (value.IsScalar()) {
      for (std::string_view choice : choices)
        if (value.Scalar() == choice) return value.Scalar();
    }
    fail(item, fmt::format("expected one of {}, got {}", list_of(choices), describe(value)));
  }

  // A mapping from names the user picks (e.g. layer names) to one of `choices`.
  std::map<std::string, std::string> read_choice_map(const YAML::Node& value, const Item& item,
                                                     const std::vector<std::string_view>& choices) const {
    if (!value.IsMap())
      fail(item, fmt::format("expected a mapping of names to one of {}, got {}", list_of(choices), describe(value)));
    std::map<std::string, std::string> out;
    std::map<std::string, int> seen;
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string name = key_name(it->first, item.path, seen);
      out[name] = read_choice(it->second, {item.path + "." + name, it->first.Mark()}, choices);
    }
    return out;
  }

  std::vector<float> read_fixed_list(const YAML::Node& value, const Item& item, const Field& field) const {
    const std::string expected = fmt::format("expected a list of {} numbers", field.list_size);
    if (!value.IsSequence()) fail(item, fmt::format("{}, got {}", expected, describe(value)));
    if (value.size() != static_cast<size_t>(field.list_size))
      fail(item, fmt::format("{}, got {}", expected, value.size()));
    std::vector<float> out;
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(read_number<float>(value[i], {fmt::format("{}[{}]", item.path, i), value[i].Mark()}, field.range));
    return out;
  }

  std::vector<double> read_increasing_list(const YAML::Node& value, const Item& item, const Range& range) const {
    if (!value.IsSequence()) fail(item, fmt::format("expected a list of numbers, got {}", describe(value)));
    std::vector<double> out;
    for (size_t i = 0; i < value.size(); ++i) {
      const Item entry{fmt::format("{}[{}]", item.path, i), value[i].Mark()};
      const double v = read_number<double>(value[i], entry, range);
      if (!out.empty() && !(v > out.back()))
        fail(entry,
             fmt::format("expected a number > {} (the list must increase), got {}", out.back(), describe(value[i])));
      out.push_back(v);
    }
    return out;
  }

  std::vector<int> read_integer_list(const YAML::Node& value, const Item& item, const Range& range) const {
    if (!value.IsSequence())
      fail(item, fmt::format("expected a list of integers{}, got {}", range.describe(), describe(value)));
    std::vector<int> out;
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(read_integer<int>(value[i], {fmt::format("{}[{}]", item.path, i), value[i].Mark()}, range));
    return out;
  }

  // VGG cfg: channel counts and "M"; counts are stored in canonical decimal form.
  std::vector<std::string> read_vgg_cfg(const YAML::Node& value, const Item& item) const {
    if (!value.IsSequence())
      fail(item, fmt::format("expected a list of channel counts and M, e.g. [64, M, 128, M], got {}", describe(value)));
    std::vector<std::string> out;
    for (size_t i = 0; i < value.size(); ++i) {
      const YAML::Node entry = value[i];
      const Item at_entry{fmt::format("{}[{}]", item.path, i), entry.Mark()};
      if (entry.IsScalar() && entry.Scalar() == "M") {
        out.emplace_back("M");
        continue;
      }
      const std::string problem =
          fmt::format("expected a channel count in [1, {}] or M, got {}", config_schema::kMaxChannels, describe(entry));
      if (!entry.IsScalar()) fail(at_entry, problem);
      const std::string_view text = without_plus(entry.Scalar());
      int count = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size() || count < 1 ||
          count > config_schema::kMaxChannels)
        fail(at_entry, problem);
      out.push_back(std::to_string(count));
    }
    return out;
  }

  // ---- model.layers ---------------------------------------------------------------------

  std::vector<LayerSpec> read_layers(const YAML::Node& value, const Item& item) const {
    if (!value.IsSequence())
      fail(item, fmt::format("expected a list of layers, each a mapping with a 'type' key, got {}", describe(value)));
    std::vector<LayerSpec> out;
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(read_layer(value[i], {fmt::format("{}[{}]", item.path, i), value[i].Mark()}));
    return out;
  }

  std::vector<std::string> layer_type_names() const {
    std::vector<std::string> names;
    for (const LayerType& t : config_schema::layer_types()) names.emplace_back(t.type);
    return names;
  }

  LayerSpec read_layer(const YAML::Node& node, const Item& item) const {
    const std::vector<std::string> types = layer_type_names();
    if (!node.IsMap()) fail(item, fmt::format("expected a mapping with a 'type' key, got {}", describe(node)));
    const LayerType* type = nullptr;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar() != "type") continue;
      const Item at_type{item.path + ".type", it->first.Mark()};
      if (it->second.IsScalar()) type = config_schema::find_layer_type(it->second.Scalar());
      if (type == nullptr)
        fail(at_type, fmt::format("expected one of {}, got {}", config_schema::join(types), describe(it->second)));
      break;
    }
    if (type == nullptr) fail(item, fmt::format("missing required key 'type' (one of {})", config_schema::join(types)));

    LayerSpec spec;
    spec.type = std::string(type->type);
    spec.line = override_of(item.path) != nullptr || item.mark.is_null() ? 0 : item.mark.line + 1;
    if (config_schema::is_pool(spec.type)) spec.kernel = 2;
    std::vector<std::string> own_keys = {"type"};
    for (const LayerKey& k : type->keys) own_keys.emplace_back(k.name);

    std::set<std::string_view> given;
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string name = key_name(it->first, item.path, seen);
      if (name == "type") continue;
      const Item at_key{item.path + "." + name, it->first.Mark()};
      const LayerKey* key = nullptr;
      for (const LayerKey& k : type->keys)
        if (k.name == name) key = &k;
      if (key == nullptr) {
        if (is_key_of_any_layer(name))
          fail(at_key, fmt::format("not a key of a {} layer (its keys: {})", spec.type, config_schema::join(own_keys)));
        unknown_key(at_key, name, own_keys, fmt::format(" of a {} layer", spec.type));
      }
      given.insert(key->name);
      read_layer_key(*key, it->second, at_key, spec);
    }
    for (const LayerKey& k : type->keys)
      if (k.required && !given.count(k.name))
        fail(item, fmt::format("missing required key '{}' for a {} layer", k.name, spec.type));
    if (config_schema::is_pool(spec.type) && !given.count("stride")) spec.stride = spec.kernel;
    return spec;
  }

  static bool is_key_of_any_layer(const std::string& name) {
    for (const LayerType& t : config_schema::layer_types())
      for (const LayerKey& k : t.keys)
        if (k.name == name) return true;
    return false;
  }

  void read_layer_key(const LayerKey& key, const YAML::Node& value, const Item& item, LayerSpec& spec) const {
    if (auto member = std::get_if<int LayerSpec::*>(&key.member)) {
      spec.*(*member) = read_integer<int>(value, item, key.range);
    } else if (auto fmember = std::get_if<float LayerSpec::*>(&key.member)) {
      spec.*(*fmember) = read_number<float>(value, item, key.range);
    } else if (auto bmember = std::get_if<bool LayerSpec::*>(&key.member)) {
      spec.*(*bmember) = read_bool(value, item);
    } else if (auto smember = std::get_if<std::string LayerSpec::*>(&key.member)) {
      spec.*(*smember) = read_string(value, item);
    } else if (auto lmember = std::get_if<std::vector<std::string> LayerSpec::*>(&key.member)) {
      spec.*(*lmember) = read_layer_refs(value, item);
    }
  }

  // `from`: one reference or a non-empty list of them; each a layer name, a negative relative
  // index (-1: the previous layer) or `input`. Whether the names exist is the graph's check.
  std::vector<std::string> read_layer_refs(const YAML::Node& value, const Item& item) const {
    const std::string expected = "a layer name, a relative index such as -2, or input";
    std::vector<std::string> refs;
    const auto read_one = [&](const YAML::Node& node, const Item& at_ref) {
      if (!node.IsScalar() || node.Scalar().empty())
        fail(at_ref, fmt::format("expected {}, got {}", expected, describe(node)));
      const std::string& text = node.Scalar();
      const bool integer = text.find_first_not_of("+-0123456789") == std::string::npos;
      if (integer && (text.size() < 2 || text[0] != '-' ||
                      text.find_first_not_of("0123456789", 1) != std::string::npos || text == "-0"))
        fail(at_ref, fmt::format("expected {}, got {} (relative indices count back: -1 is the previous layer)",
                                 expected, text));
      refs.push_back(text);
    };
    if (value.IsSequence()) {
      if (value.size() == 0) fail(item, fmt::format("expected {} or a non-empty list of them, got []", expected));
      for (size_t i = 0; i < value.size(); ++i)
        read_one(value[i], {fmt::format("{}[{}]", item.path, i), value[i].Mark()});
    } else {
      read_one(value, item);
    }
    return refs;
  }

  // ---- rules between keys ---------------------------------------------------------------

  // Where `path` was written, or where `fallback` was when `path` was not given.
  std::string written_at(const std::string& path, const std::string& fallback) const {
    for (const std::string& p : {path, fallback}) {
      if (const std::string* text = override_of(p)) return "--set " + *text;
      if (auto it = marks_.find(p); it != marks_.end()) return at(it->second);
    }
    return source_;
  }

  void check_list_for_name(const std::string& list, bool non_empty, const std::string& wanted_name,
                           const std::string& name) const {
    if (name == wanted_name && !non_empty)
      throw ConfigError(fmt::format("{}: {}: required (a non-empty list) when model.name is {}",
                                    written_at(list, "model.name"), list, wanted_name));
    if (name != wanted_name && non_empty)
      throw ConfigError(fmt::format("{}: {}: only used when model.name is {} (model.name is {})",
                                    written_at(list, "model.name"), list, wanted_name, name));
  }

  void check_combinations(const Config& config) const {
    check_synthetic_size(config.data);
    check_list_for_name("model.cfg", !config.model.cfg.empty(), "vgg", config.model.name);
    check_list_for_name("model.layers", !config.model.layers.empty(), "sequential", config.model.name);
    check_resnet(config.model);
    if (config.schedule.name == "multistep" && config.schedule.milestones.empty())
      throw ConfigError(
          fmt::format("{}: schedule.milestones: required (a non-empty list) when schedule.name is "
                      "multistep",
                      written_at("schedule.milestones", "schedule.name")));
  }

  // Each synthetic size is bounded by the schema; their product, the bytes generated, is bounded too.
  void check_synthetic_size(const DataConfig& data) const {
    if (data.dataset != "synthetic") return;
    const int64_t side = data.synthetic_image_size;
    const int64_t bytes = (data.synthetic_train_size + data.synthetic_test_size) * side * side * 3;
    if (bytes <= config_schema::kMaxSyntheticBytes) return;
    throw ConfigError(
        fmt::format("{}: data.synthetic_*: the synthetic images take (synthetic_train_size {} + synthetic_test_size "
                    "{}) x {} x {} x "
                    "3 bytes = {:.1f} GiB, more than the limit of {}",
                    written_at("data.synthetic_image_size", "data.synthetic_train_size"), data.synthetic_train_size,
                    data.synthetic_test_size, side, side, static_cast<double>(bytes) / (1 << 30),
                    byte_count_text(config_schema::kMaxSyntheticBytes)));
  }

  // model.widths, model.blocks and model.shortcut (models/resnet.h).
  void check_resnet(const ModelConfig& model) const {
    check_list_for_name("model.widths", !model.widths.empty(), "resnet", model.name);
    check_list_for_name("model.blocks", !model.blocks.empty(), "resnet", model.name);
    const bool resnet = model.name.rfind("resnet", 0) == 0;  // the schema allows only ResNets by that prefix
    if (!resnet && model.shortcut != "auto")
      throw ConfigError(fmt::format("{}: model.shortcut: only used by the ResNets (model.name is {})",
                                    written_at("model.shortcut", "model.name"), model.name));
    if (resnet && !model.batch_norm)
      throw ConfigError(
          fmt::format("{}: model.batch_norm: a ResNet always has batch norm after every conv; false is "
                      "only for the VGGs",
                      written_at("model.batch_norm", "model.name")));
    if (model.widths.size() != model.blocks.size())
      throw ConfigError(
          fmt::format("{}: model.blocks: expected one block count per stage of model.widths ({} "
                      "widths), got {}",
                      written_at("model.blocks", "model.widths"), model.widths.size(), model.blocks.size()));
    if (model.shortcut == "pad") {
      for (size_t i = 1; i < model.widths.size(); ++i)
        if (model.widths[i] < model.widths[i - 1])
          throw ConfigError(
              fmt::format("{}: model.widths[{}]: the pad shortcut adds zero channels and cannot remove "
                          "any, so the widths must not decrease, got {} after {} (shortcut: projection "
                          "can)",
                          written_at("model.widths", "model.shortcut"), i, model.widths[i], model.widths[i - 1]));
    }
  }

  std::string source_;
  std::map<std::string, std::string> overrides_;  // key path -> the --set text that wrote it
  std::map<std::string, YAML::Mark> marks_;       // key path -> where the file wrote the key
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides) {
  Reader reader(source_name);
  YAML::Node root = reader.load(yaml_text);
  reader.apply_overrides(root, overrides);
  Config config = reader.read(root);
  config.source = source_name;
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text;
  try {
    text = read_regular_file_text(path, kMaxConfigBytes, "config file");
  } catch (const Error& e) {
    throw ConfigError(e.what());  // a bad config file is the user's to fix: exit code 2
  }
  return parse_config(text, path, overrides);
}

}  // namespace convnet
