// How many YAML documents a config holds is decided without yaml-cpp's LoadAll, which never
// returns for a stray ',' at the top level (found by tests/fuzz/fuzz_config; the input is
// corpus/config/regression-*).
#include <gtest/gtest.h>

#include <string>

#include "core/base/error.h"
#include "core/config/config.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

std::string config_error(const std::string& yaml) {
  return error_of<ConfigError>([&] { (void)parse_config(yaml, "bad.yaml"); });
}

TEST(ConfigYamlDocuments, StrayCommaAtTheTopLevelIsAnErrorNotAHang) {
  EXPECT_EQ(config_error(",\n").rfind("bad.yaml:1: the configuration is empty", 0), 0u);
  EXPECT_EQ(config_error(", - x\n").rfind("bad.yaml:1: the configuration is empty", 0), 0u);
}

TEST(ConfigYamlDocuments, StrayCommaAfterTheFirstDocumentIsASecondDocument) {
  EXPECT_EQ(config_error("train: {}\n---\n,\n"),
            "bad.yaml:3: a second YAML document starts here; a configuration is one document");
}

TEST(ConfigYamlDocuments, SecondDocumentIsNamedAtItsFirstNode) {
  EXPECT_EQ(config_error("train: {}\n---\n\nmodel: {}\n"),
            "bad.yaml:4: a second YAML document starts here; a configuration is one document");
}

}  // namespace
}  // namespace convnet
