// `convnet benchmark --ranks`: the data-parallel scaling report. Alone it measures the backward
// timeline and models the links; under mpirun with 2 ranks it also measures every bucket's
// all-reduce. Checked: the report's parts, the model's arithmetic (one rank is 100%, overlap never
// makes a step slower, the network is slower than NVLink), and the usage errors.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/common/cli_runner.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::run_convnet;
using testing::RunResult;
using testing::TempDir;

const char* kConfig = R"(model: {name: vgg, cfg: [32, M, 64, M], batch_norm: true, pool: avg}
data: {dataset: synthetic, synthetic_train_size: 64, synthetic_test_size: 16, synthetic_image_size: 8}
train: {batch_size: 16, seed: 3, threads: 1, backend: cpu}
)";

struct ModelRow {
  int ranks = 0;
  std::string link;
  double all_reduce_ms = 0, plain_ms = 0, plain_eff = 0, overlapped_ms = 0, overlapped_eff = 0;
};

// The rows of the modelled table: | ranks | link | ms | ms | % | ms | % |
std::vector<ModelRow> model_rows(const std::string& out) {
  const std::regex row(
      R"(\| (\d+) \| (-|NVLink|network) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+) \| ([\d.]+)% \|)");
  std::vector<ModelRow> rows;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), row); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    rows.push_back(
        {std::stoi(m[1]), m[2], std::stod(m[3]), std::stod(m[4]), std::stod(m[5]), std::stod(m[6]), std::stod(m[7])});
  }
  return rows;
}

class CliBenchmarkRanks : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_file(config_, kConfig); }
  std::string args(const std::string& flags) const { return "benchmark " + config_ + " --repeats 3 " + flags; }
  TempDir dir_;
  std::string config_ = dir_.file("dp.yaml");
};

TEST_F(CliBenchmarkRanks, AloneReportsBucketsTimelineAndTheModelledTable) {
  const RunResult r = run_convnet(args("--ranks 1,2,8,16,64 --gpus-per-node 8"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"fp32 gradients per step in 1 bucket", "measured: forward", "| bucket | MB | ready at",
                           "run under mpirun -np 2 to measure"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  const std::vector<ModelRow> rows = model_rows(r.out);
  ASSERT_EQ(rows.size(), 5u) << r.out;
  EXPECT_EQ(rows[0].ranks, 1);
  EXPECT_EQ(rows[0].link, "-");
  EXPECT_EQ(rows[0].all_reduce_ms, 0.0);
  EXPECT_EQ(rows[0].plain_eff, 100.0);
  EXPECT_EQ(rows[0].overlapped_eff, 100.0);
  for (const ModelRow& m : rows) {
    EXPECT_LE(m.overlapped_ms, m.plain_ms + 1e-9) << m.ranks;
    EXPECT_GE(m.overlapped_eff, m.plain_eff) << m.ranks;
    EXPECT_EQ(m.link, m.ranks == 1 ? "-" : (m.ranks <= 8 ? "NVLink" : "network")) << m.ranks;
  }
  // Less bandwidth across nodes: the 16-rank all-reduce takes longer than the 8-rank one.
  EXPECT_GT(rows[3].all_reduce_ms, rows[2].all_reduce_ms) << r.out;
  EXPECT_GT(rows[1].all_reduce_ms, 0.0) << r.out;
}

TEST_F(CliBenchmarkRanks, UsageErrorsNameTheFlag) {
  const RunResult json = run_convnet(args("--ranks 2 --json"));
  EXPECT_EQ(json.exit_code, 2);
  EXPECT_NE(json.err.find("--json: not available with --ranks"), std::string::npos) << json.err;
  const RunResult zero = run_convnet(args("--ranks 0"));
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("--ranks: 0"), std::string::npos) << zero.err;
}

TEST_F(CliBenchmarkRanks, UnderMpirunTwoRanksMeasureEveryBucketsAllReduce) {
#ifndef CONVNET_MPIEXEC
  GTEST_SKIP() << "this build has no MPI (install libopenmpi-dev openmpi-bin and rebuild)";
#else
  const std::string mpirun = std::string("OMPI_MCA_btl_vader_single_copy_mechanism=none ") + CONVNET_MPIEXEC +
                             " --oversubscribe --allow-run-as-root -np 2 ";
  const RunResult r = testing::run_program(mpirun + CONVNET_BINARY, args("--ranks 1,2"));
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("all-reduce ms, 2 ranks here (mpi)"), std::string::npos) << r.out;
  const std::regex measured(R"(this machine, 2 ranks: all-reduce ([\d.]+) ms per step)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, measured)) << r.out;
  EXPECT_GT(std::stod(m[1]), 0.0);
  // Rank 0 alone prints the report.
  EXPECT_EQ(r.out.find("measured: forward"), r.out.rfind("measured: forward")) << r.out;
#endif
}

}  // namespace
}  // namespace convnet
