// `convnet benchmark` with comparison backends (--compare), on the CPU: the JSON fields, the ratio
// arithmetic, the table, and the usage errors.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;
using testing::write_file;

// Two conv layers (3 passes each), BN, ReLU, pooling and a linear classifier on 8x8 images.
const char* kSyntheticConfig = R"(model: {name: vgg, cfg: [8, M, 16, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 64, synthetic_test_size: 16, synthetic_image_size: 8}
train: {batch_size: 16, seed: 3, threads: 2}
)";

class CliBenchmark : public ::testing::Test {
 protected:
  void SetUp() override { write_file(config(), kSyntheticConfig); }
  std::string config() const { return dir_.file("syn.yaml"); }
  RunResult bench(const std::string& flags) const {
    return run_convnet("benchmark " + config() + " --repeats 3 --batch-size 8 " + flags);
  }

 private:
  TempDir dir_;
};

bool close_to(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b));
}

TEST_F(CliBenchmark, CompareJsonHasPositiveRatiosThatMatchTheTimes) {
  const RunResult r = bench("--compare cpu --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("backend"), "cpu");
  ASSERT_EQ(j.at("compare_backends"), nlohmann::json::array({"cpu"}));
  EXPECT_TRUE(j.at("copy_bandwidth").is_null());  // measured on GPU backends only
  // The data path: bytes = uint8 read + f32 written for each batch element, rate = bytes / time.
  const auto& aug = j.at("augment_batch");
  const Shape example = {8, 8, 3};  // the synthetic images of kSyntheticConfig
  const double expected_bytes = static_cast<double>(aug.at("images").get<int64_t>() * shape_numel(example) * 5);
  EXPECT_DOUBLE_EQ(aug.at("bytes").get<double>(), expected_bytes);
  EXPECT_TRUE(
      close_to(aug.at("gbytes_per_sec").get<double>(), expected_bytes / (aug.at("median_ms").get<double>() * 1e6)));
  EXPECT_TRUE(aug.at("pct_of_copy_bandwidth").is_null());

  // Every pass of every layer carries the comparison; ratio = their median / our median.
  std::map<std::string, double> ours_by_layer, theirs_by_layer;
  int conv_passes = 0;
  for (const auto& row : j.at("layers")) {
    const auto& cmp = row.at("compare");
    ASSERT_EQ(cmp.size(), 1u) << row.dump();
    EXPECT_EQ(cmp[0].at("backend"), "cpu");
    const double ours = row.at("median_ms").get<double>(), theirs = cmp[0].at("median_ms").get<double>();
    ASSERT_GT(ours, 0.0);
    ASSERT_GT(theirs, 0.0);
    EXPECT_GT(cmp[0].at("ratio").get<double>(), 0.0);
    EXPECT_TRUE(close_to(cmp[0].at("ratio").get<double>(), theirs / ours)) << row.dump();
    EXPECT_LE(cmp[0].at("min_ms").get<double>(), theirs);
    EXPECT_GE(cmp[0].at("max_ms").get<double>(), theirs);
    ours_by_layer[row.at("layer")] += ours;
    theirs_by_layer[row.at("layer")] += theirs;
    // Rows with FLOPs are compute-bound, the rest memory-bound; no peak is known on the CPU.
    EXPECT_EQ(row.at("bound"), row.at("flops").get<double>() > 0 ? "compute" : "memory");
    EXPECT_TRUE(row.at("pct_of_peak").is_null());
    EXPECT_GT(row.at("gbytes_per_sec").get<double>(), 0.0);
    EXPECT_TRUE(close_to(row.at("tflops_per_sec").get<double>() * 1e3, row.at("gflops_per_sec").get<double>()));
    if (row.contains("gemm_gflops_per_sec")) ++conv_passes;
  }
  EXPECT_EQ(conv_passes, 6);

  // Per-layer totals are the sums of their passes, and the conv total the sum over conv layers.
  double conv_ours = 0, conv_theirs = 0;
  int conv_layers = 0;
  for (const auto& t : j.at("layer_totals")) {
    const std::string name = t.at("layer");
    EXPECT_TRUE(close_to(t.at("total_ms").get<double>(), ours_by_layer.at(name))) << name;
    const auto& c = t.at("compare").at(0);
    EXPECT_TRUE(close_to(c.at("total_ms").get<double>(), theirs_by_layer.at(name))) << name;
    EXPECT_GT(c.at("ratio").get<double>(), 0.0);
    if (t.at("conv").get<bool>()) {
      ++conv_layers;
      conv_ours += ours_by_layer.at(name);
      conv_theirs += theirs_by_layer.at(name);
    }
  }
  EXPECT_EQ(conv_layers, 2);
  const auto& conv = j.at("convolution");
  EXPECT_TRUE(close_to(conv.at("total_ms").get<double>(), conv_ours));
  EXPECT_TRUE(close_to(conv.at("compare").at(0).at("total_ms").get<double>(), conv_theirs));
  EXPECT_TRUE(close_to(conv.at("compare").at(0).at("ratio").get<double>(), conv_theirs / conv_ours));
  EXPECT_GT(conv.at("ratio_to_gemm").get<double>(), 0.0);
  EXPECT_GT(j.at("all_layers").at("compare").at(0).at("ratio").get<double>(), 0.0);

  // A training step on each backend, the main one first with ratio 1.
  const auto& steps = j.at("train_steps");
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].at("backend"), "cpu");
  EXPECT_DOUBLE_EQ(steps[0].at("ratio").get<double>(), 1.0);
  const double ips0 = steps[0].at("images_per_sec").get<double>(), ips1 = steps[1].at("images_per_sec").get<double>();
  ASSERT_GT(ips1, 0.0);
  EXPECT_TRUE(close_to(steps[1].at("ratio").get<double>(), ips0 / ips1));
  EXPECT_DOUBLE_EQ(j.at("train_step").at("images_per_sec").get<double>(), ips0);
}

TEST_F(CliBenchmark, NoComparisonByDefaultOnCpuAndNoneTurnsItOff) {
  for (const std::string flags : {"--json", "--compare none --json"}) {
    const RunResult r = bench(flags);
    ASSERT_EQ(r.exit_code, 0) << flags << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j.at("compare_backends").empty()) << flags;
    for (const auto& row : j.at("layers")) EXPECT_TRUE(row.at("compare").empty()) << flags;
    EXPECT_EQ(j.at("train_steps").size(), 1u) << flags;
  }
}

TEST_F(CliBenchmark, TableShowsRatioColumnsAndPerLayerTotals) {
  const RunResult r = bench("--compare cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"GFLOP/s", "GB/s", "%peak", "backend", "xcpu", "convolution layers, three passes summed",
                           "ours/theirs speed", "training step on cpu", "data path on cpu: augment_batch"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  EXPECT_EQ(r.out.find("TFLOP/s"), std::string::npos) << "TFLOP/s is for GPU backends";
  EXPECT_EQ(r.out.find("device-to-device copy"), std::string::npos) << "copy bandwidth is for GPU backends";
}

// --precision sets the main backend's train.precision; NAME@PRECISION runs a comparison backend in
// that precision (cudnn@bf16 on a GPU): both are named in the JSON, per comparison and per step.
TEST_F(CliBenchmark, PrecisionOfTheMainAndEachComparisonBackend) {
  const RunResult r = bench("--precision bf16 --compare cpu@bf16,cpu --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("precision"), "bf16");
  EXPECT_EQ(j.at("compare_backends"), nlohmann::json::array({"cpu@bf16", "cpu"}));
  EXPECT_EQ(j.at("compare_precisions"), nlohmann::json::array({"bf16", "fp32"}));
  for (const auto& row : j.at("layers")) {
    ASSERT_EQ(row.at("compare").size(), 2u);
    EXPECT_EQ(row.at("compare").at(0).at("precision"), "bf16");
    EXPECT_EQ(row.at("compare").at(1).at("precision"), "fp32");
  }
  EXPECT_EQ(j.at("convolution").at("compare").at(0).at("precision"), "bf16");
  const auto& steps = j.at("train_steps");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].at("backend"), "cpu");
  EXPECT_EQ(steps[0].at("precision"), "bf16");
  EXPECT_EQ(steps[1].at("backend"), "cpu@bf16");
  EXPECT_EQ(steps[1].at("precision"), "bf16");
  EXPECT_EQ(steps[2].at("precision"), "fp32");
  EXPECT_EQ(j.at("train_step").at("precision"), "bf16");

  const RunResult table = bench("--precision bf16 --compare cpu@bf16");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  for (const char* text : {"on cpu in bf16", "xcpu@bf16", "training step on cpu@bf16 in bf16"})
    EXPECT_NE(table.out.find(text), std::string::npos) << text << "\n" << table.out;
}

TEST_F(CliBenchmark, UnknownComparePrecisionIsAnErrorNamingIt) {
  const RunResult r = bench("--compare cpu@fp16 --json");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("fp16"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << "fails before printing any result: " << r.out;
  EXPECT_NE(bench("--precision fp16 --json").exit_code, 0);
}

TEST_F(CliBenchmark, UnknownCompareBackendIsAUsageErrorNamingIt) {
  const RunResult r = bench("--compare cpu,warpdrive --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("warpdrive"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << "fails before printing any result: " << r.out;
}

}  // namespace
}  // namespace convnet
