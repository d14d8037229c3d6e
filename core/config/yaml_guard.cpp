#include "core/config/yaml_guard.h"

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>

#include "core/config/printable.h"

namespace convnet::config_yaml {

namespace {

// "tag:yaml.org,2002:binary" -> "!!binary", as the file wrote it.
std::string written_tag(const std::string& tag) {
  const std::string core_prefix = "tag:yaml.org,2002:";
  if (tag.rfind(core_prefix, 0) == 0) return "!!" + tag.substr(core_prefix.size());
  return tag;
}

// "?" (plain) and "!" (quoted) are what untagged nodes carry; "" an empty value.
bool is_untagged(const std::string& tag) {
  return tag.empty() || tag == "?" || tag == "!";
}

class Walk {
 public:
  std::optional<Problem> visit(const YAML::Node& node, int depth = 0) {
    if (depth > kMaxDocumentDepth)
      return Problem{node.Mark(), fmt::format("the document nests more than {} levels deep, or an alias refers to "
                                              "its own anchor; a configuration nests 4 levels",
                                              kMaxDocumentDepth)};
    if (++nodes_ > kMaxDocumentNodes)
      return Problem{node.Mark(), fmt::format("the document has more than {} nodes (counting each node once per "
                                              "alias that repeats it); a configuration has a few thousand at most",
                                              kMaxDocumentNodes)};
    if (!is_untagged(node.Tag()))
      return Problem{node.Mark(), fmt::format("YAML tags are not supported (got {}); write the plain value",
                                              printable(written_tag(node.Tag())))};
    if (node.IsSequence()) {
      for (const YAML::Node& item : node)
        if (auto problem = visit(item, depth + 1)) return problem;
    } else if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        // Copies: the iterator hands out a temporary pair.
        const YAML::Node key = it->first, value = it->second;
        if (auto problem = visit(key, depth + 1)) return problem;
        if (auto problem = visit(value, depth + 1)) return problem;
      }
    }
    return std::nullopt;
  }

 private:
  long nodes_ = 0;
};

}  // namespace

std::optional<Problem> find_problem(const YAML::Node& root) {
  return Walk().visit(root);
}

std::string parse_problem(const YAML::Exception& e) {
  if (dynamic_cast<const YAML::DeepRecursion*>(&e) != nullptr)
    return "nested too deeply for the parser (a configuration nests 4 levels: section, key, list, layer)";
  return e.msg;
}

}  // namespace convnet::config_yaml
