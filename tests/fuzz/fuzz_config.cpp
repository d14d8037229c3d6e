// Config reader: YAML text, then optionally a line "#--set" followed by one `--set` override per
// line (the marker is a YAML comment, so the text before it is also a plain config file). An
// accepted config must survive its own round trip: parse_config(to_yaml(c)) loads and writes the
// same YAML again (the contract of core/config/config.h).
#include <string>
#include <vector>

#include "core/config/config.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

struct FuzzConfigInput {
  std::string yaml;
  std::vector<std::string> overrides;
};

FuzzConfigInput split_input(std::string_view text) {
  static constexpr std::string_view kMarker = "\n#--set\n";
  const size_t cut = text.find(kMarker);
  if (cut == std::string_view::npos) return {std::string(text), {}};
  FuzzConfigInput input{std::string(text.substr(0, cut)), {}};
  std::string_view rest = text.substr(cut + kMarker.size());
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    input.overrides.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  return input;
}

void check_round_trip(const Config& config) {
  const std::string written = to_yaml(config);
  std::string again;
  try {
    again = to_yaml(parse_config(written, "effective.yaml"));
  } catch (const Error& e) {
    fuzz::invariant_failed("to_yaml wrote a config that parse_config rejects: " + std::string(e.what()) +
                           "\n--- written:\n" + written);
  }
  if (again != written)
    fuzz::invariant_failed("to_yaml(parse_config(to_yaml(c))) != to_yaml(c)\n--- first:\n" + written +
                           "\n--- second:\n" + again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const FuzzConfigInput input = split_input(fuzz::as_text(data, size));
  fuzz::loads_or_rejects([&] { check_round_trip(parse_config(input.yaml, "fuzz.yaml", input.overrides)); });
  return 0;
}
