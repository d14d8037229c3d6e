// Checkpoint tensors: non-finite values and impossible statistics are refused when loading and
// when saving, naming the tensor; weights written by another program (no convnet metadata, the
// model's names) load into a model; names, shapes and dtypes that do not fit are Errors that list
// what differs, with the file's dtype spelled as in the file.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/optim/sgd.h"
#include "core/train/checkpoint.h"
#include "tests/common/safetensors_edit.h"
#include "tests/common/test_util.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::TempDir;

class CheckpointWeights : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::build_tiny_graph(graph_, *backend_, 1, /*batch_norm=*/true);
    testing::build_tiny_graph(other_, *backend_, 2, /*batch_norm=*/true);
    save_checkpoint(path_, graph_, nullptr, TrainingState{});
  }

  // Rewrites the checkpoint (checksummed anew) after `edit` changed its tensors or metadata.
  template <class Edit>
  void edit_file(Edit edit) {
    SafetensorsFile file = read_safetensors(path_);
    edit(file);
    write_safetensors(path_, file.tensors, file.metadata);
  }
  static NamedTensor& tensor(SafetensorsFile& file, const std::string& name) {
    for (NamedTensor& t : file.tensors)
      if (t.name == name) return t;
    throw Error("no tensor " + name);
  }
  // The model tensors of the checkpoint as another program writes them: no convnet metadata,
  // no checksum.
  void make_foreign(const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
    SafetensorsFile file = read_safetensors(path_);
    write_safetensors(path_, file.tensors, metadata);
    const std::string bytes = testing::read_file(path_);
    nlohmann::ordered_json header = testing::header_of(bytes);
    header["__metadata__"].erase("convnet.file_checksum");
    testing::write_file(path_, testing::with_header(bytes, header));
  }
  std::string load_error() {
    return error_of([&] { load_model_weights(path_, other_); });
  }
  void expect_same_parameters() {
    auto a = graph_.named_parameters(), b = other_.named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second->value.to_vector(), b[i].second->value.to_vector());
  }

  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Graph graph_, other_;
  TempDir dir_;
  const std::string path_ = dir_.file("c.safetensors");
};

TEST_F(CheckpointWeights, NonFiniteWeightsAreRefusedOnLoadNamingTheTensor) {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    save_checkpoint(path_, graph_, nullptr, TrainingState{});
    edit_file([&](SafetensorsFile& f) { tensor(f, "layers.0.weight").tensor.f32()[5] = bad; });
    for (const std::string& error : {load_error(), error_of([&] { load_checkpoint(path_, other_, nullptr); }),
                                     error_of([&] { read_checkpoint_summary(path_); })}) {
      EXPECT_NE(error.find(path_), std::string::npos) << error;
      EXPECT_NE(error.find("tensor 'layers.0.weight' holds"), std::string::npos) << error;
      EXPECT_NE(error.find("at index 5 (values must be finite)"), std::string::npos) << error;
    }
  }
}

TEST_F(CheckpointWeights, ImpossibleStatisticsAreRefused) {
  edit_file([](SafetensorsFile& f) { tensor(f, "layers.1.running_var").tensor.f32()[2] = -0.25f; });
  std::string error = load_error();
  EXPECT_NE(error.find("tensor 'layers.1.running_var' holds the variance -0.25 at index 2 (a variance is >= 0)"),
            std::string::npos)
      << error;
  save_checkpoint(path_, graph_, nullptr, TrainingState{});
  edit_file([](SafetensorsFile& f) { tensor(f, "layers.1.num_batches_tracked").tensor.data<int32_t>()[0] = -1; });
  error = load_error();
  EXPECT_NE(error.find("tensor 'layers.1.num_batches_tracked' holds the count -1"), std::string::npos) << error;
}

TEST_F(CheckpointWeights, SavingNonFiniteWeightsIsRefusedAndKeepsThePreviousFile) {
  const std::string before = testing::read_file(path_);
  Parameter& weight = *graph_.named_parameters().front().second;
  weight.value.f32()[3] = std::numeric_limits<float>::quiet_NaN();
  const std::string error = error_of([&] { save_checkpoint(path_, graph_, nullptr, TrainingState{}); });
  EXPECT_NE(error.find("refusing to write checkpoint '" + path_ + "'"), std::string::npos) << error;
  EXPECT_NE(error.find("tensor 'layers.0.weight' holds nan"), std::string::npos) << error;
  EXPECT_EQ(testing::read_file(path_), before);
  const std::string check = error_of([&] { check_finite_state(graph_, nullptr, nullptr, "before saving"); });
  EXPECT_NE(check.find("before saving: tensor 'layers.0.weight' holds nan at index 3"), std::string::npos) << check;
  weight.value.f32()[3] = 0.5f;
  EXPECT_NO_THROW(check_finite_state(graph_, nullptr, nullptr, "before saving"));
}

TEST_F(CheckpointWeights, NonFiniteMomentumIsRefusedOnSave) {
  OptimizerConfig oc;
  Sgd sgd(oc, make_parameter_groups(oc, graph_.named_parameters(), graph_.parameter_backends()));
  for (OptimizedParameter& p : sgd.parameters())
    if (p.momentum.defined()) p.momentum.f32()[0] = std::numeric_limits<float>::infinity();
  const std::string error = error_of([&] { save_checkpoint(path_, graph_, &sgd, TrainingState{}); });
  EXPECT_NE(error.find("tensor 'optimizer.layers.0.weight.momentum_buffer' holds inf"), std::string::npos) << error;
}

TEST_F(CheckpointWeights, ForeignWeightsLoadIntoTheModel) {
  make_foreign();
  EXPECT_EQ(read_safetensors(path_).checksum, ChecksumCoverage::none);
  load_model_weights(path_, other_);
  expect_same_parameters();
  const CheckpointSummary summary = read_checkpoint_summary(path_, /*allow_foreign=*/true);
  EXPECT_FALSE(summary.has_training_state);
  EXPECT_TRUE(summary.input_shape.empty());
  // Resuming needs the training state; the message says how to use the weights.
  const std::string error = error_of([&] { load_checkpoint(path_, other_, nullptr); });
  EXPECT_NE(error.find("not a convnet checkpoint"), std::string::npos) << error;
  EXPECT_NE(error.find("--config CONFIG"), std::string::npos) << error;
  EXPECT_NE(error_of([&] { read_checkpoint_summary(path_); }).find("not a convnet checkpoint"), std::string::npos);
}

TEST_F(CheckpointWeights, ForeignWeightsAreCheckedLikeOurs) {
  make_foreign();
  edit_file([](SafetensorsFile& f) { tensor(f, "layers.0.weight").tensor.f32()[0] = std::nanf(""); });
  EXPECT_NE(load_error().find("tensor 'layers.0.weight' holds nan"), std::string::npos);
  save_checkpoint(path_, graph_, nullptr, TrainingState{});
  make_foreign();
  edit_file([](SafetensorsFile& f) {
    NamedTensor& w = tensor(f, "layers.0.weight");
    w.tensor = w.tensor.reshaped({4, 27});
  });
  const std::string error = load_error();
  EXPECT_NE(error.find("tensor 'layers.0.weight' has shape [4, 27], the model expects [4, 3, 3, 3]"), std::string::npos)
      << error;
}

TEST_F(CheckpointWeights, DtypeMessagesSpellTheFilesDtype) {
  // PyTorch's int64 where float32 belongs: the message says I64, not the I32 it is narrowed to.
  edit_file([](SafetensorsFile& f) {
    NamedTensor& w = tensor(f, "layers.0.weight");
    w.tensor = Tensor(w.tensor.shape(), DType::i32);
    w.as_i64 = true;
  });
  std::string error = load_error();
  EXPECT_NE(error.find("tensor 'layers.0.weight' has dtype I64, the model expects F32"), std::string::npos) << error;
  // And num_batches_tracked must be PyTorch's I64.
  save_checkpoint(path_, graph_, nullptr, TrainingState{});
  edit_file([](SafetensorsFile& f) { tensor(f, "layers.1.num_batches_tracked").as_i64 = false; });
  error = load_error();
  EXPECT_NE(error.find("tensor 'layers.1.num_batches_tracked' has dtype I32, the model expects I64"), std::string::npos)
      << error;
  save_checkpoint(path_, graph_, nullptr, TrainingState{});
  edit_file([](SafetensorsFile& f) {
    NamedTensor& w = tensor(f, "layers.0.weight");
    w.tensor = Tensor(w.tensor.shape(), DType::f16);
  });
  error = load_error();
  EXPECT_NE(error.find("has dtype F16, the model expects F32"), std::string::npos) << error;
  // The summary spells I64 too.
  save_checkpoint(path_, graph_, nullptr, TrainingState{});
  for (const CheckpointSummary::Entry& e : read_checkpoint_summary(path_).tensors)
    EXPECT_EQ(e.dtype, e.name == "layers.1.num_batches_tracked" ? "I64" : "F32") << e.name;
}

TEST_F(CheckpointWeights, NamesThatDoNotFitAreListed) {
  edit_file([](SafetensorsFile& f) {
    std::erase_if(f.tensors, [](const NamedTensor& t) { return t.name == "layers.1.running_var"; });
    f.tensors.push_back({"head.weight", Tensor::full({2}, 1.0f)});
  });
  const std::string error = load_error();
  EXPECT_NE(error.find("does not fit the model: 1 tensor of the model is missing (layers.1.running_var); 1 tensor of "
                       "the file is not in the model (head.weight) (a checkpoint of another model?)"),
            std::string::npos)
      << error;
}

TEST_F(CheckpointWeights, DataParallelPrefixIsExplained) {
  edit_file([](SafetensorsFile& f) {
    for (NamedTensor& t : f.tensors) t.name = "module." + t.name;
  });
  const std::string error = load_error();
  EXPECT_NE(error.find("PyTorch DataParallel's 'module.' prefix"), std::string::npos) << error;
}

}  // namespace
}  // namespace convnet
