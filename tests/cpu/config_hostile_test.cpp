// Hostile configurations (a user trial's findings): each is a ConfigError naming the file, the
// line where there is one, and what was expected, never a hang, a crash or std::bad_alloc.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/config/printable.h"
#include "tests/common/config_error.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::config_error_of;
using testing::error_of;
using testing::TempDir;
using testing::write_file;

::testing::AssertionResult contains(const std::string& message, const std::string& expected) {
  if (message.find(expected) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "message:  " << message << "\nexpected: " << expected;
}

// The ConfigError load_config() raises for `path`.
std::string load_error(const std::string& path) {
  return error_of<ConfigError>([&] { load_config(path); });
}

TEST(ConfigHostile, EverySectionReadsBackAfterTheIteratorFix) {
  // read_section once bound a reference to the iterator's temporary (ASan: stack-use-after-scope).
  const Config c = parse_config("train: {epochs: 3, batch_size: 7}\ndata: {augment: {cutout: 4}}\n", "ok.yaml");
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_EQ(c.train.batch_size, 7);
  EXPECT_EQ(c.data.augment.cutout, 4);
}

TEST(ConfigHostile, FileThatIsNotRegularOrTooLargeIsRefused) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  EXPECT_TRUE(contains(load_error(dir.file("fifo")), "is a FIFO (named pipe), expected a regular file"));
  EXPECT_TRUE(contains(load_error("/dev/zero"), "config file '/dev/zero': is a character device"));
  EXPECT_TRUE(contains(load_error(dir.path()), "is a directory, expected a regular file"));
  write_file(dir.file("big.yaml"), "# " + std::string(kMaxConfigBytes, 'x') + "\n");
  EXPECT_TRUE(contains(load_error(dir.file("big.yaml")), "more than the limit of 1 MiB for a config file"));
}

struct Hostile {
  const char* name;
  const char* yaml;
  const char* expected;
};

class ConfigHostileInputs : public ::testing::TestWithParam<Hostile> {};

TEST_P(ConfigHostileInputs, IsAConfigErrorSayingWhatWasExpected) {
  EXPECT_TRUE(contains(config_error_of(GetParam().yaml), GetParam().expected));
}

const Hostile kHostile[] = {
    {"BillionLaughs",
     "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\na1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
     "a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\na3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, "
     "*a2, *a2]\na4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\na5: [*a4, *a4, *a4, *a4, *a4, *a4, *a4, "
     "*a4, *a4, *a4, *a4, *a4]\n",
     "bad.yaml:1: the document has more than 100000 nodes"},
    {"AliasInsideItsOwnAnchor", "train: &t {epochs: 1, t: *t}\n", "bad.yaml:1: the document nests more than 64 levels"},
    {"ExplicitTag", "output: {dir: !!binary aGVsbG8=}\n", "bad.yaml:1: YAML tags are not supported (got !!binary)"},
    {"CustomTag", "train: !!python/object {epochs: 1}\n",
     "bad.yaml:1: YAML tags are not supported (got !!python/object)"},
    {"MergeKey", "<<: {train: {epochs: 1}}\n", "bad.yaml:1: <<: YAML merge keys (<<) are not supported"},
    {"EmptyKey", "\"\": 1\n", "bad.yaml:1: (top level): expected a key name, got an empty string"},
    {"InvalidUtf8Key", "train:\n  \xff\xfe: 1\n", "bad.yaml:2: train: expected a key name, got '\\xFF\\xFE'"},
    {"ControlCharactersInAValueAreEscaped", "train: {epochs: \"\x01\x02\"}\n",
     "bad.yaml:1: train.epochs: expected a number in (0, 1000000], got '\\x01\\x02'"},
    {"SyntheticImageSize", "data: {dataset: synthetic, synthetic_image_size: 30000}\n",
     "bad.yaml:1: data.synthetic_image_size: expected an integer in [1, 512], got 30000"},
    {"SyntheticBytes", "data: {dataset: synthetic, synthetic_train_size: 1000000, synthetic_image_size: 512}\n",
     "data.synthetic_*: the synthetic images take (synthetic_train_size 1000000 + synthetic_test_size 512) x 512 x "
     "512 x 3 bytes = 732.8 GiB, more than the limit of 4 GiB"},
    {"BatchSize", "train: {batch_size: 100000}\n", "bad.yaml:1: train.batch_size: expected an integer in [1, 65536]"},
    {"VggWidth", "model: {name: vgg, cfg: [1000000, M]}\n",
     "bad.yaml:1: model.cfg[0]: expected a channel count in [1, 65536] or M, got 1000000"},
    {"ResnetWidth", "model: {name: resnet, widths: [2147483647], blocks: [1]}\n",
     "bad.yaml:1: model.widths[0]: expected an integer in [1, 65536]"},
    {"ResnetBlocks", "model: {name: resnet, widths: [8], blocks: [2000000000]}\n",
     "bad.yaml:1: model.blocks[0]: expected an integer in [1, 1024]"},
    {"NumClasses", "model: {num_classes: 2000000000}\n",
     "bad.yaml:1: model.num_classes: expected an integer in [2, 65536]"},
    {"LayerPadding", "model: {name: sequential, layers: [{type: conv, out_channels: 8, padding: 2000000000}]}\n",
     "bad.yaml:1: model.layers[0].padding: expected an integer in [0, 1024]"},
    {"LayerOutFeatures", "model: {name: sequential, layers: [{type: linear, out_features: 2000000000}]}\n",
     "bad.yaml:1: model.layers[0].out_features: expected an integer in [1, 65536]"},
    {"Workers", "data: {workers: 100000000}\n", "bad.yaml:1: data.workers: expected an integer in [0, 256]"},
    {"Threads", "train: {threads: 100000000}\n", "bad.yaml:1: train.threads: expected an integer in [0, 1024]"},
    {"CropPadding", "data: {augment: {crop_padding: 2000000000}}\n",
     "bad.yaml:1: data.augment.crop_padding: expected an integer in [0, 256]"},
    {"Epochs", "train: {epochs: 1e300}\n", "bad.yaml:1: train.epochs: expected a number in (0, 1000000], got 1e300"},
    {"WarmupEpochs", "schedule: {warmup_epochs: 1e300}\n",
     "bad.yaml:1: schedule.warmup_epochs: expected a number in [0, 1000000]"},
};

INSTANTIATE_TEST_SUITE_P(All, ConfigHostileInputs, ::testing::ValuesIn(kHostile),
                         [](const auto& test) { return std::string(test.param.name); });

TEST(ConfigHostile, ListsHoldAtMost1024Entries) {
  std::string cfg = "model: {name: vgg, cfg: [8";
  for (int i = 0; i < 1024; ++i) cfg += ", 8";
  EXPECT_TRUE(contains(config_error_of(cfg + "]}\n"),
                       "bad.yaml:1: model.cfg: expected a list of at most 1024 entries, got 1025"));
}

TEST(ConfigHostile, DeepNestingIsRefusedWithTheLimit) {
  const std::string deep = "train: " + std::string(70, '[') + std::string(70, ']') + "\n";
  EXPECT_TRUE(contains(config_error_of(deep), "bad.yaml:1: the document nests more than 64 levels"));
}

TEST(ConfigHostile, DeepNestingBeyondTheParserLimitSaysSo) {
  const std::string deep = "x: " + std::string(5000, '[') + std::string(5000, ']') + "\n";
  EXPECT_TRUE(contains(config_error_of(deep), "bad.yaml:1: invalid YAML: nested too deeply for the parser"));
}

TEST(ConfigHostile, OverridesAreGuardedToo) {
  EXPECT_TRUE(contains(config_error_of("train: {epochs: 1}\n", {"output.dir=!!binary aGVsbG8="}),
                       "--set output.dir=!!binary aGVsbG8=: YAML tags are not supported"));
  EXPECT_TRUE(contains(config_error_of("train: {epochs: 1}\n", {"train.batch_size=0"}),
                       "--set train.batch_size=0: train.batch_size: expected an integer in [1, 65536], got 0"));
}

TEST(ConfigHostile, ValidUtf8PathsAndAliasReuseStillRead) {
  const Config c = parse_config("data: {path: \"caf\xc3\xa9\", mean: &m [0.1, 0.2, 0.3], std: *m}\n", "ok.yaml");
  EXPECT_EQ(c.data.path, "caf\xc3\xa9");
  EXPECT_FLOAT_EQ(c.data.std[2], 0.3f);
}

TEST(Printable, EscapesControlsAndInvalidUtf8AndCutsLongText) {
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(printable("a\x01"
                      "b\xff"),
            "a\\x01b\\xFF");
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xED\\xA0\\x80");  // a UTF-16 surrogate is not UTF-8
  EXPECT_EQ(printable(std::string(100, 'k'), 3), "kkk... (100 bytes)");
  EXPECT_TRUE(is_printable_utf8("layer \xe2\x82\xac"));
  EXPECT_FALSE(is_printable_utf8(std::string("nul\0x", 5)));
}

}  // namespace
}  // namespace convnet
