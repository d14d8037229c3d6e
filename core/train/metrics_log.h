// metrics.jsonl: one JSON object per line, appended (so a resumed run continues the same file).
// Every line: {"split","step","epoch","lr","loss","accuracy"}; training lines (split "train")
// also "images_per_sec". `epoch` is fractional (completed epochs plus the position within the
// current one); `lr` is the learning rate of the step (for a test line, of the last step before
// it).
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
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

// Reads every record of a metrics.jsonl file (lines that fail to parse are an Error naming the
// line, except a last line without its newline: a write cut off by a crash, which is skipped).
std::vector<MetricsRecord> read_metrics(const std::string& path);

// Rewrites `path` (atomically) with only the records `keep` accepts, the kept lines unchanged,
// dropping a cut-off last line too; a resumed run uses it to forget what was logged after its
// checkpoint. Nothing happens when the file does not exist or every line is kept. Returns the
// number of lines dropped.
size_t keep_metrics(const std::string& path, const std::function<bool(const MetricsRecord&)>& keep);

}  // namespace convnet
