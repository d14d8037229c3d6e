#include "core/train/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/base/error.h"

namespace convnet {

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw Error(fmt::format("cannot open '{}' for appending: {}", path, std::strerror(errno)));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const MetricsRecord& r) {
  nlohmann::json j = {
      {"split", r.split}, {"step", r.step}, {"epoch", r.epoch}, {"loss", r.loss}, {"accuracy", r.accuracy}};
  if (r.split == "train") {
    j["lr"] = r.lr;
    j["images_per_sec"] = r.images_per_sec;
  }
  const std::string line = j.dump() + "\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw Error(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

std::vector<MetricsRecord> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::vector<MetricsRecord> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      MetricsRecord r;
      r.split = j.at("split").get<std::string>();
      const auto& step = j.at("step");  // get<int64_t>() of a float would be a cast out of range (UB) for 1e300
      if (!step.is_number_integer())
        throw Error(fmt::format("{}:{}: not a metrics record: step {} is not an integer", path, line_no, step.dump()));
      r.step = step.get<int64_t>();
      r.epoch = j.at("epoch").get<double>();
      r.loss = j.at("loss").get<double>();
      r.accuracy = j.at("accuracy").get<double>();
      r.lr = j.value("lr", 0.0);
      r.images_per_sec = j.value("images_per_sec", 0.0);
      out.push_back(r);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}:{}: not a metrics record: {}", path, line_no, e.what()));
    }
  }
  return out;
}

}  // namespace convnet
