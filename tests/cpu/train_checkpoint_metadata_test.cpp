// Checkpoint metadata: every field is validated at load with an Error naming the file, the key and
// the allowed range (behind a valid checksum, as a hand-edited and re-checksummed file would be);
// the checksum covers the header; format 1 files are read, files without a checksum are not; a
// resumed position must fit the run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "tests/common/safetensors_edit.h"
#include "tests/common/test_util.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::data_checksum;
using testing::error_of;
using testing::header_of;
using testing::TempDir;
using testing::with_header;

class CheckpointMetadata : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::build_tiny_graph(graph_, *backend_, 1, /*batch_norm=*/true);
    state_.step = 20;
    state_.epoch = 2;
    state_.batch_in_epoch = 4;
    state_.best_accuracy = 0.5;
    state_.lr = 0.01;
    state_.config_yaml = "model: {name: sequential}\n";
    state_.data_fingerprint = "N=8 H=4 W=4 C=3 classes=5 fnv1a64=0123456789abcdef";
    state_.class_names = {"a", "b", "c", "d", "e"};
    save_checkpoint(path_, graph_, nullptr, state_);
  }

  // Rewrites the checkpoint with `key` set to `value` (erased when null), checksummed anew.
  void set_metadata(const std::string& key, const char* value) {
    SafetensorsFile file = read_safetensors(path_);
    if (value)
      file.metadata[key] = value;
    else
      file.metadata.erase(key);
    write_safetensors(path_, file.tensors, file.metadata);
  }

  std::string load_error() {
    return error_of([&] { load_checkpoint(path_, graph_, nullptr); });
  }

  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Graph graph_;
  TrainingState state_;
  TempDir dir_;
  const std::string path_ = dir_.file("c.safetensors");
};

TEST_F(CheckpointMetadata, RoundTripsEveryField) {
  const TrainingState s = load_checkpoint(path_, graph_, nullptr);
  EXPECT_EQ(s.step, 20);
  EXPECT_EQ(s.epoch, 2);
  EXPECT_EQ(s.batch_in_epoch, 4);
  EXPECT_EQ(s.best_accuracy, 0.5);
  EXPECT_EQ(s.lr, 0.01);
  EXPECT_EQ(s.rng, state_.rng);
  EXPECT_EQ(s.config_yaml, state_.config_yaml);
  EXPECT_EQ(s.data_fingerprint, state_.data_fingerprint);
  EXPECT_EQ(s.class_names, state_.class_names);
  const CheckpointSummary summary = read_checkpoint_summary(path_);
  EXPECT_TRUE(summary.has_training_state);
  EXPECT_EQ(summary.input_shape, (Shape{4, 4, 3}));
  EXPECT_EQ(summary.metadata.at("convnet.format_version"), "2");
}

struct BadValue {
  const char* key;
  const char* value;  // nullptr: the key is removed
  const char* expected;
};

class CheckpointMetadataValue : public CheckpointMetadata, public ::testing::WithParamInterface<BadValue> {};

TEST_P(CheckpointMetadataValue, IsAnErrorNamingFileKeyAndRange) {
  const BadValue& bad = GetParam();
  set_metadata(bad.key, bad.value);
  for (const std::string& error : {load_error(), error_of([&] { read_checkpoint_summary(path_); }),
                                   error_of([&] { load_model_weights(path_, graph_); })}) {
    EXPECT_NE(error.find(path_), std::string::npos) << error;
    EXPECT_NE(error.find(std::string("'") + bad.key + "'"), std::string::npos) << error;
    EXPECT_NE(error.find(bad.expected), std::string::npos) << error;
    EXPECT_EQ(error.find("check failed"), std::string::npos) << error;
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, CheckpointMetadataValue,
    ::testing::Values(
        BadValue{"convnet.step", "-5", "expected an integer in [0, 9007199254740992]"},
        BadValue{"convnet.step", "1e3", "expected an integer"},
        BadValue{"convnet.step", "99999999999999999999", "expected an integer"},
        BadValue{"convnet.step", nullptr, "is missing"}, BadValue{"convnet.epoch", "-1", "expected an integer in [0, "},
        BadValue{"convnet.batch_in_epoch", "99999", "= 2 + 'convnet.batch_in_epoch' = 99999 exceed"},
        BadValue{"convnet.epoch", "30", "every epoch and batch takes a step"},
        BadValue{"convnet.best_accuracy", "7", "expected -1 (not evaluated) or an accuracy in [0, 1]"},
        BadValue{"convnet.best_accuracy", "-0.5", "expected -1 (not evaluated) or an accuracy in [0, 1]"},
        BadValue{"convnet.best_accuracy", "nan", "expected -1"},
        BadValue{"convnet.lr", "nan", "expected a finite learning rate >= 0"},
        BadValue{"convnet.lr", "inf", "expected a finite learning rate >= 0"},
        BadValue{"convnet.lr", "-0.1", "expected a finite learning rate >= 0"},
        BadValue{"convnet.lr", "", "expected a finite learning rate"},
        BadValue{"convnet.rng", "abc", "expected 64 hexadecimal digits"},
        BadValue{"convnet.rng", "000000000000000000000000000000000000000000000000000000000000000g",
                 "expected 64 hexadecimal digits"},
        BadValue{"convnet.rng", "0000000000000000000000000000000000000000000000000000000000000000", "all zero"},
        BadValue{"convnet.format_version", "3", "this build reads formats 2 and 1"},
        BadValue{"convnet.format_version", nullptr, "is missing"}, BadValue{"format", "np", "expected 'pt'"},
        BadValue{"convnet.ema", "average", "expected ema or lookahead"},
        BadValue{"convnet.config", nullptr, "is missing"}, BadValue{"convnet.data", nullptr, "is missing"},
        BadValue{"convnet.class_names", "[\"a\",", "is not valid JSON"},
        BadValue{"convnet.class_names", "[\"a\", \"a\"]", "names class 'a' twice"},
        BadValue{"convnet.class_names", "[\"a\", 3]", "expected a name"},
        BadValue{"convnet.class_names", "[]", "is not a list of 1 to 100000 names"},
        BadValue{"convnet.input_shape", "[4, 4]", "expected [H, W, C], each in [1, 65536]"},
        BadValue{"convnet.input_shape", "[0, 4, 3]", "expected [H, W, C]"},
        BadValue{"convnet.unknown", "1", "is not a key of convnet's checkpoint format 2"}));

TEST_F(CheckpointMetadata, EditedMetadataFailsTheChecksum) {
  const std::string bytes = testing::read_file(path_);
  nlohmann::ordered_json header = header_of(bytes);
  header["__metadata__"]["convnet.step"] = "19";
  testing::write_file(path_, with_header(bytes, header));
  const std::string error = load_error();
  EXPECT_NE(error.find("checksum mismatch: header or data is corrupt"), std::string::npos) << error;
}

TEST_F(CheckpointMetadata, AConvnetFileWithoutChecksumIsCorrupt) {
  const std::string bytes = testing::read_file(path_);
  nlohmann::ordered_json header = header_of(bytes);
  header["__metadata__"].erase("convnet.file_checksum");
  testing::write_file(path_, with_header(bytes, header));
  std::string error = load_error();
  EXPECT_NE(error.find("'convnet.file_checksum' is missing: the file is corrupt"), std::string::npos) << error;
  // Nor does the data checksum of format 1 do for a format 2 file.
  header["__metadata__"]["convnet.checksum"] = data_checksum(bytes);
  testing::write_file(path_, with_header(bytes, header));
  error = load_error();
  EXPECT_NE(error.find("'convnet.file_checksum' is missing"), std::string::npos) << error;
}

// A checkpoint as convnet wrote it before format 2: a data checksum, no class names or input shape.
void make_format_1(const std::string& path, bool with_checksum) {
  const std::string bytes = testing::read_file(path);
  nlohmann::ordered_json header = header_of(bytes);
  nlohmann::ordered_json& meta = header["__metadata__"];
  meta["convnet.format_version"] = "1";
  for (const char* key : {"convnet.file_checksum", "convnet.class_names", "convnet.input_shape"}) meta.erase(key);
  if (with_checksum) meta["convnet.checksum"] = data_checksum(bytes);
  testing::write_file(path, with_header(bytes, header));
}

TEST_F(CheckpointMetadata, FormatOneIsReadWithItsDataChecksumAndValidated) {
  make_format_1(path_, /*with_checksum=*/true);
  const TrainingState s = load_checkpoint(path_, graph_, nullptr);
  EXPECT_EQ(s.step, 20);
  EXPECT_TRUE(s.class_names.empty());
  // No input shape recorded: the data fingerprint's H, W, C stand in.
  EXPECT_EQ(read_checkpoint_summary(path_).input_shape, (Shape{4, 4, 3}));

  std::string bytes = testing::read_file(path_);
  nlohmann::ordered_json header = header_of(bytes);
  header["__metadata__"]["convnet.lr"] = "nan";  // the data checksum does not cover it: validation does
  testing::write_file(path_, with_header(bytes, header));
  EXPECT_NE(load_error().find("'convnet.lr' = 'nan': expected a finite learning rate"), std::string::npos);
}

TEST_F(CheckpointMetadata, FormatOneWithoutChecksumIsCorrupt) {
  make_format_1(path_, /*with_checksum=*/false);
  const std::string error = load_error();
  EXPECT_NE(error.find("'convnet.checksum' is missing: the file is corrupt"), std::string::npos) << error;
}

TEST_F(CheckpointMetadata, ClassNamesMustMatchTheModelsOutputs) {
  set_metadata("convnet.class_names", "[\"a\", \"b\"]");
  const std::string error = load_error();
  EXPECT_NE(error.find("trained on 2 classes (a, b) but the model outputs 5"), std::string::npos) << error;
}

TEST(CheckpointResumePosition, MustFitTheRunsEpochs) {
  TrainingState s;
  s.step = 20;
  s.epoch = 2;
  s.batch_in_epoch = 4;
  EXPECT_NO_THROW(check_resume_position(s, 8, "c"));
  s.batch_in_epoch = 8;  // stopped after the epoch's last batch, before its end
  s.step = 24;
  EXPECT_NO_THROW(check_resume_position(s, 8, "c"));
  s.batch_in_epoch = 9;
  std::string error = error_of([&] { check_resume_position(s, 8, "c"); });
  EXPECT_NE(error.find("'convnet.batch_in_epoch' = 9 is past the end of an epoch of 8 batches"), std::string::npos)
      << error;
  s.batch_in_epoch = 4;
  s.step = 21;
  error = error_of([&] { check_resume_position(s, 8, "c"); });
  EXPECT_NE(error.find("'convnet.step' = 21 is more than epoch 2 x 8 batches + batch 4"), std::string::npos) << error;
  s.step = 12;  // a run whose last, fractional epoch ended early, continued with more epochs
  EXPECT_NO_THROW(check_resume_position(s, 8, "c"));
}

}  // namespace
}  // namespace convnet
