// metrics.jsonl: every line carries lr; keep_metrics (a resume forgetting what was logged after its
// checkpoint) keeps lines verbatim and drops a line cut off by a crash.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/base/error.h"
#include "core/train/metrics_log.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

void write_rows(const std::string& path, int64_t last_step) {
  MetricsLog log(path);
  for (int64_t step = 1; step <= last_step; ++step) {
    log.write({"train", step, 0.1 * static_cast<double>(step), 0.5, 2.0, 0.25, 100});
    if (step % 2 == 0) log.write({"test", step, 0.1 * static_cast<double>(step), 0.5, 1.5, 0.5, 0});
  }
}

TEST(MetricsLog, TestLinesCarryTheLearningRateToo) {
  TempDir dir;
  write_rows(dir.file("m.jsonl"), 2);
  std::istringstream lines(read_file(dir.file("m.jsonl")));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_DOUBLE_EQ(j.at("lr").get<double>(), 0.5) << line;
    EXPECT_EQ(j.contains("images_per_sec"), j.at("split") == "train") << line;
    ++n;
  }
  EXPECT_EQ(n, 3);
  EXPECT_DOUBLE_EQ(read_metrics(dir.file("m.jsonl")).at(2).lr, 0.5);
}

TEST(MetricsLog, KeepMetricsDropsTheRowsItRejectsAndKeepsTheOthersVerbatim) {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  write_rows(path, 4);
  const std::string before = read_file(path);
  EXPECT_EQ(keep_metrics(path, [](const MetricsRecord&) { return true; }), 0u);
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(keep_metrics(path, [](const MetricsRecord& r) { return r.step <= 2; }), 3u);
  const std::string after = read_file(path);
  EXPECT_EQ(after, before.substr(0, after.size()));
  EXPECT_EQ(read_metrics(path).size(), 3u);
  EXPECT_EQ(keep_metrics(dir.file("none.jsonl"), [](const MetricsRecord&) { return false; }), 0u);
}

TEST(MetricsLog, ALastLineCutOffByACrashIsSkippedAndDroppedButNotOneInTheMiddle) {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  write_rows(path, 2);
  const std::string whole = read_file(path);
  write_file(path, whole + R"({"split":"train","step":3,"ep)");
  EXPECT_EQ(read_metrics(path).size(), 3u);
  EXPECT_EQ(keep_metrics(path, [](const MetricsRecord&) { return true; }), 1u);
  EXPECT_EQ(read_file(path), whole);

  write_file(path, R"({"split":"train","step":3,"ep)" + std::string("\n") + whole);
  try {
    read_metrics(path);
    FAIL() << "expected an error naming line 1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.jsonl:1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace convnet
