#include "core/train/metrics_log.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "core/base/error.h"
#include "core/io/safetensors.h"

namespace convnet {

namespace {

struct MetricsLine {
  std::string text;
  MetricsRecord record;
};

// A line that is JSON but not a record.
struct NotARecord : std::runtime_error {
  using std::runtime_error::runtime_error;
};

MetricsRecord parse_record(const std::string& line) {
  const auto j = nlohmann::json::parse(line);
  MetricsRecord r;
  r.split = j.at("split").get<std::string>();
  const auto& step = j.at("step");  // get<int64_t>() of a float would be a cast out of range (UB) for 1e300
  if (!step.is_number_integer()) throw NotARecord(fmt::format("step {} is not an integer", step.dump()));
  r.step = step.get<int64_t>();
  r.epoch = j.at("epoch").get<double>();
  r.loss = j.at("loss").get<double>();
  r.accuracy = j.at("accuracy").get<double>();
  r.lr = j.value("lr", 0.0);
  r.images_per_sec = j.value("images_per_sec", 0.0);
  return r;
}

// Every parsed line of `path`. A last line without its newline that does not parse is a write
// cut off by a crash: skipped with a warning. Sets `dropped` to the lines skipped.
std::vector<MetricsLine> read_lines(const std::string& path, size_t& dropped) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<MetricsLine> out;
  dropped = 0;
  size_t pos = 0;
  for (int line_no = 1; pos < text.size(); ++line_no) {
    const size_t end = text.find('\n', pos);
    const bool complete = end != std::string::npos;
    std::string line = text.substr(pos, complete ? end - pos : std::string::npos);
    pos = complete ? end + 1 : text.size();
    if (line.empty()) continue;
    const auto refuse = [&](const std::exception& e) {
      if (complete) throw Error(fmt::format("{}:{}: not a metrics record: {}", path, line_no, e.what()));
      spdlog::warn("{}:{}: skipping a cut-off last line (an interrupted write)", path, line_no);
      ++dropped;
    };
    try {
      MetricsRecord record = parse_record(line);
      out.push_back({std::move(line), std::move(record)});
    } catch (const nlohmann::json::exception& e) {
      refuse(e);
    } catch (const NotARecord& e) {
      refuse(e);
    }
  }
  return out;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw Error(fmt::format("cannot open '{}' for appending: {}", path, std::strerror(errno)));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const MetricsRecord& r) {
  nlohmann::json j = {{"split", r.split}, {"step", r.step}, {"epoch", r.epoch},
                      {"lr", r.lr},       {"loss", r.loss}, {"accuracy", r.accuracy}};
  if (r.split == "train") j["images_per_sec"] = r.images_per_sec;
  const std::string line = j.dump() + "\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw Error(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

std::vector<MetricsRecord> read_metrics(const std::string& path) {
  size_t dropped = 0;
  std::vector<MetricsRecord> out;
  for (MetricsLine& line : read_lines(path, dropped)) out.push_back(std::move(line.record));
  return out;
}

size_t keep_metrics(const std::string& path, const std::function<bool(const MetricsRecord&)>& keep) {
  if (!std::filesystem::exists(path)) return 0;
  size_t dropped = 0;
  std::string kept;
  for (const MetricsLine& line : read_lines(path, dropped)) {
    if (keep(line.record))
      kept += line.text + "\n";
    else
      ++dropped;
  }
  if (dropped > 0) write_file_atomic(path, kept);
  return dropped;
}

}  // namespace convnet
