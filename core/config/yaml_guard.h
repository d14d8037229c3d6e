// Checks of a parsed YAML document before its keys are read, against what a hostile file can
// do that the key-by-key reading would not catch: explicit tags (!!binary, !!python/object),
// which the reader would otherwise ignore and so misread the value, and aliases that multiply
// the document (a "billion laughs" file: a few lines whose aliases expand to 10^9 nodes).
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>

namespace convnet::config_yaml {

// At most this many nodes, counting a node once per alias that reaches it; a real configuration
// has a few thousand at most.
inline constexpr long kMaxDocumentNodes = 100000;
// At most this deep, counting through aliases (an alias inside its own anchor makes a cycle).
inline constexpr int kMaxDocumentDepth = 64;

struct Problem {
  YAML::Mark mark;
  std::string message;
};

// The first explicit tag in `root`, or an alias expansion beyond kMaxDocumentNodes or kMaxDocumentDepth.
std::optional<Problem> find_problem(const YAML::Node& root);

// A parser exception as the text after "invalid YAML: ": yaml-cpp's own message, except for its
// depth limit, whose message ("bad file") does not say what is wrong.
std::string parse_problem(const YAML::Exception& e);

}  // namespace convnet::config_yaml
