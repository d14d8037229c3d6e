// metrics.jsonl: one JSON object per line, appended (so a resumed run continues the same file).
// Training lines: {"split":"train","step","epoch","lr","loss","accuracy","images_per_sec"};
// evaluation lines: {"split":"test","step","epoch","loss","accuracy"}. `epoch` is fractional
// (completed epochs plus the position within the current one).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace convnet {

struct MetricsRecord {
  std::string split;  // "train" | "test"
  int64_t step = 0;
  double epoch = 0;
  double lr = 0;
  double loss = 0;
  double accuracy = 0;
  double images_per_sec = 0;
};

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // opens for appending; throws Error
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const MetricsRecord& record);  // one line, flushed

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Reads every record of a metrics.jsonl file (lines that fail to parse are an Error naming the line).
std::vector<MetricsRecord> read_metrics(const std::string& path);

}  // namespace convnet
